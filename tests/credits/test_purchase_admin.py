"""Purchases in the admin as staff use them (issue 23, item 15): found by the organization's name or
id, by anyone's email (the organization's people, the buyer of personal credits) or the purchase's
id as well as by invoice number; listed by who paid, not "account 2"; refunded from the purchase's
own page as well as from the list."""

import pytest
from django.test import Client
from django.urls import reverse

from credits.models import Purchase
from credits.services import account_for
from tests.conftest import World
from tests.factories import UserFactory


def bought(account_owner: dict[str, object], number: str, *, status: str = "paid") -> Purchase:
    return Purchase.objects.create(
        account=account_for(**account_owner),  # type: ignore[arg-type]
        amount_cents=5_000,
        idempotency_key=f"admin-{number}",
        status=status,
        invoice_number=number,
    )


@pytest.fixture
def purchases(world: World) -> dict[str, Purchase]:
    return {
        "acme": bought({"organization": world.org}, "KB-000101"),
        "globex": bought({"organization": world.neighbour}, "KB-000102"),
        "personal": bought({"user": UserFactory(email="solo@personal.test")}, "KB-000103"),
    }


def found(admin_client: Client, term: str) -> set[str]:
    answer = admin_client.get(reverse("admin:credits_purchase_changelist"), {"q": term})
    assert answer.status_code == 200
    return {purchase.invoice_number for purchase in answer.context["cl"].result_list}


def test_staff_find_a_purchase_by_organization_person_or_id(
    admin_client: Client, world: World, purchases: dict[str, Purchase]
) -> None:
    acme = purchases["acme"]
    for term in (
        "Acme Robotics",
        "acme robotics",
        str(world.org.pk),
        world.owner.email,
        world.member.email,
        world.billing.email,
        str(acme.pk),
        "KB-000101",
    ):
        assert found(admin_client, term) == {"KB-000101"}, term
    assert found(admin_client, "solo@personal.test") == {"KB-000103"}  # personal credits
    assert found(admin_client, "Globex") == {"KB-000102"}
    assert found(admin_client, world.outsider.email) == {"KB-000102"}  # Globex's owner
    assert found(admin_client, "nobody@nowhere.test") == set()


def test_the_purchase_list_names_who_paid(
    admin_client: Client, world: World, purchases: dict[str, Purchase]
) -> None:
    page = admin_client.get(reverse("admin:credits_purchase_changelist")).content.decode()
    organization = reverse("admin:organizations_organization_change", args=[world.org.pk])
    assert f'<a href="{organization}">Acme Robotics</a>' in page
    assert "solo@personal.test <small>(personal)</small>" in page
    assert f"account {purchases['acme'].account_id}" not in page


def test_refund_is_a_link_on_the_purchase_page_too(
    admin_client: Client, world: World, purchases: dict[str, Purchase]
) -> None:
    acme = purchases["acme"]
    page = admin_client.get(reverse("admin:credits_purchase_change", args=[acme.pk]))
    refund = reverse("admin:credits_purchase_refund", args=[acme.pk])
    assert f'<a href="{refund}">Refund…</a>' in page.content.decode()
    assert admin_client.get(refund).status_code == 200
    pending = bought({"organization": world.org}, "KB-000104", status="pending")
    page = admin_client.get(reverse("admin:credits_purchase_change", args=[pending.pk]))
    assert reverse("admin:credits_purchase_refund", args=[pending.pk]) not in page.content.decode()


def test_a_purchase_cannot_be_edited_in_the_admin(
    admin_client: Client, purchases: dict[str, Purchase]
) -> None:
    """A purchase moves only through its services: its admin page has no field to change (a
    pending purchase marked paid, or an amount raised, by a form would never reach the ledger)."""
    pending = bought({"organization": purchases["acme"].account.organization}, "KB-000104",
                     status="pending")  # fmt: skip
    url = reverse("admin:credits_purchase_change", args=[pending.pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    assert not any(field for field in page.context["adminform"].form.fields)
    admin_client.post(url, {"status": "paid", "amount_cents": "999999", "action_url": "x.test"})
    pending.refresh_from_db()
    assert (pending.status, pending.amount_cents) == ("pending", 5_000)
