"""The personal profile (its invoices, each organization's state), the audit log in sentences,
the CSRF-failure page, the tokens page's organization ids, and the money filters."""

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing.services import billing_profile_for
from billing.templatetags.money import cents, dollars, microdollars, microdollars_to_cents
from dashboard.audit import describe
from invoices.models import Invoice
from organizations.models import AuditEvent, Membership, Organization
from organizations.roles import Role
from organizations.services import audit_record
from tests.conftest import World, client_for
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def personal_invoice(user: Any, number: str, **fields: Any) -> Invoice:
    now = timezone.now()
    return Invoice.objects.create(
        billing_profile=billing_profile_for(user=user),
        gateway_id=f"in_{number}",
        number=number,
        kind=Invoice.Kind.CREDIT_PURCHASE,
        status=Invoice.Status.PAID,
        amount_due=2_000,
        amount_paid=2_000,
        invoice_pdf=f"https://pay.example/{number}.pdf",
        hosted_invoice_url=f"https://pay.example/{number}",
        created=now - timedelta(minutes=int(number[-3:])),
        observed_at=now,
        **fields,
    )


# Money


@pytest.mark.parametrize(
    ("microdollars_in", "shown"),
    [
        (3_700_294_159, "$3,700.29"),
        (3_700_295_000, "$3,700.30"),  # half a cent: up
        (3_700_294_999, "$3,700.29"),
        (4_999, "$0.00"),
        (5_000, "$0.01"),
        (0, "$0.00"),
        (-5_000, "-$0.01"),  # halves away from zero
        (-4_999, "$0.00"),
        (10**20, "$100,000,000,000,000.00"),
    ],
)
def test_dollars_rounds_microdollars_half_up_to_the_cent(microdollars_in: int, shown: str) -> None:
    assert dollars(microdollars_in) == shown
    assert cents(microdollars_to_cents(microdollars_in)) == shown


def test_per_request_amounts_keep_their_digits() -> None:
    assert microdollars(450) == "$0.00045"
    assert dollars(None) == ""


# The personal profile


def test_the_profile_lists_personal_invoices_with_their_pdfs(world: World) -> None:
    for n in range(7):
        personal_invoice(world.member, f"KB-P00{n:03d}")
    personal_invoice(world.owner, "KB-O00001")  # someone else's
    page = client_for(world.member).get(reverse("personal_profile")).content.decode()
    assert "Your invoices" in page
    shown = [n for n in range(7) if f"KB-P00{n:03d}" in page]
    assert shown == [0, 1, 2, 3, 4]  # the five newest
    assert 'href="https://pay.example/KB-P00000.pdf"' in page
    assert "KB-O00001" not in page
    assert reverse("personal_invoices") in page


def test_the_personal_invoices_page_lists_all_of_them_paginated(world: World) -> None:
    for n in range(30):
        personal_invoice(world.member, f"KB-P00{n:03d}")
    personal_invoice(world.owner, "KB-O00001")
    client = client_for(world.member)
    first = client.get(reverse("personal_invoices")).content.decode()
    second = client.get(reverse("personal_invoices"), {"page": 2}).content.decode()
    listed = [n for n in range(30) if f"KB-P00{n:03d}" in first + second]
    assert listed == list(range(30))
    assert "Page 1 of 2" in first
    assert "KB-O00001" not in first + second


def test_the_personal_invoices_page_needs_a_log_in(db: None) -> None:
    response = Client().get(reverse("personal_invoices"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_a_person_without_invoices_is_told_how_they_come(world: World) -> None:
    page = client_for(world.outsider).get(reverse("personal_invoices")).content.decode()
    assert "No personal invoices yet" in page


def test_the_profile_shows_each_organizations_state(world: World) -> None:
    Membership.objects.create(organization=world.neighbour, user=world.member, role=Role.MEMBER)
    Organization.objects.filter(pk=world.neighbour.pk).update(
        billing_state="suspended",
        suspended_at=timezone.now(),
        suspended_by_staff=True,
        suspension_reason="x",
    )
    page = client_for(world.member).get(reverse("personal_profile")).content.decode()
    assert "Suspended</span> by staff" in page
    assert "Active</span>" in page
    assert 'class="banner' not in page


def test_a_closed_organization_of_someone_else_is_404(world: World) -> None:
    organization = Organization.objects.create(
        name="Gone Co", billing_state="deleted", deleted_at=timezone.now()
    )
    url = reverse("personal_closed_organization", args=[organization.pk])
    assert client_for(world.owner).get(url).status_code == 404
    # Nor an organization that is not closed, even one's own.
    assert (
        client_for(world.owner)
        .get(reverse("personal_closed_organization", args=[world.org.pk]))
        .status_code
        == 404
    )


# The audit log in sentences


@pytest.mark.parametrize(
    ("action", "target", "details", "sentence"),
    [
        (
            "credit_purchase.paid",
            "purchase 1",
            {"amount_cents": 25_000, "invoice": "in_1"},
            "Bought $250.00 of credits",
        ),
        (
            "auto_topup.configure",
            "account 1",
            {"enabled": True, "threshold_microdollars": 10_000_000, "amount_cents": 5_000},
            "Turned auto top-up on: buy $50.00 when the balance falls under $10.00",
        ),
        ("auto_topup.configure", "account 1", {"enabled": False}, "Turned auto top-up off"),
        (
            "seats.add",
            "1 seat",
            {"amount": 600, "invoice": "KB-000007", "quantity": 6},
            "Added 1 seat for $6.00, 6 seats in all (invoice KB-000007)",
        ),
        (
            "billing.pay_now",
            "KB-000009",
            {"amount_paid": 9_000, "failure": ""},
            "Paid $90.00 of overdue invoices with “Pay now” (KB-000009)",
        ),
        (
            "credits.grant",
            "account 1",
            {"amount_microdollars": 12_345_678, "reason": "Sorry for the outage"},
            "Granted $12.35 of credits: Sorry for the outage",
        ),
        (
            "credits.adjustment",
            "account 1",
            {"amount_microdollars": -2_000_000, "reason": "Duplicate grant"},
            "Removed $2.00 of credits by adjustment: Duplicate grant",
        ),
        (
            "membership.change_role",
            "max@acme.test",
            {"old_role": "member", "role": "admin"},
            "Changed the role of max@acme.test from Member to Admin",
        ),
        (
            "credits.member_daily_limit",
            "account 1",
            {"limit_microdollars": 2_500_000},
            "Set the daily limit per member to $2.50",
        ),
        (
            "billing.suspend",
            "Acme Robotics",
            {"from_state": "grace", "to_state": "suspended", "reason": "grace ended"},
            "Suspended the organization: grace ended",
        ),
        # An action nobody wrote a sentence for: words, and money in dollars.
        (
            "credits.refund",
            "purchase 3",
            {"amount_microdollars": 5_000_000, "refund_cents": 500, "note": "partial"},
            "Credits refund: purchase 3 (amount $5.00; refund $5.00; note partial)",
        ),
    ],
)
def test_each_action_reads_as_a_sentence(
    world: World, action: str, target: str, details: dict[str, Any], sentence: str
) -> None:
    event = audit_record(
        organization=world.org, actor=world.owner, action=action, target=target, **details
    )
    assert describe(event) == sentence


def test_the_audit_log_page_shows_sentences_not_key_value_dumps(world: World) -> None:
    audit_record(
        organization=world.org,
        actor=world.owner,
        action="auto_topup.configure",
        target="account 1",
        enabled=True,
        threshold_microdollars=10_000_000,
        amount_cents=5_000,
    )
    audit_record(organization=world.org, actor=None, action="seats.end", target="5 seats")
    page = client_for(world.admin).get(reverse("org_audit", args=[world.org.pk])).content.decode()
    assert "Turned auto top-up on: buy $50.00 when the balance falls under $10.00" in page
    assert "threshold_microdollars" not in page
    assert "amount_cents" not in page
    assert "Kilo Billing (automatic)" in page
    assert "The seat subscription ended" in page


def test_the_audit_log_is_for_owners_and_admins(world: World) -> None:
    url = reverse("org_audit", args=[world.org.pk])
    assert client_for(world.owner).get(url).status_code == 200
    assert client_for(world.billing).get(url).status_code == 403
    assert client_for(world.outsider).get(url).status_code == 404


def test_old_or_odd_details_never_break_the_page(world: World) -> None:
    event = AuditEvent.objects.create(
        organization=world.org, action="seats.add", target="2 seats", details={"amount": "n/a"}
    )
    assert describe(event).startswith("Added 2 seats for")
    odd = AuditEvent.objects.create(organization=world.org, action="x", details=["not", "a dict"])
    assert describe(odd) == "X"


# CSRF failure


def test_a_changed_session_gets_a_styled_page_saying_to_reload(world: World) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.owner)
    address = reverse("org_settings", args=[world.org.pk])
    response = client.post(address, {"name": "Pwned"}, HTTP_REFERER=f"http://testserver{address}")
    assert response.status_code == 403
    page = response.content.decode()
    assert "Your session changed" in page
    assert "Reload the page and try again." in page
    assert f'href="http://testserver{address}"' in page
    assert 'class="site-header"' in page  # the site's own layout
    Organization.objects.get(name="Acme Robotics")  # nothing changed
    # A referer from elsewhere is not offered as the way back.
    elsewhere = client.post(address, {}, HTTP_REFERER="https://evil.example/")
    assert "evil.example" not in elsewhere.content.decode()


# The tokens page


def test_the_tokens_page_shows_the_organization_ids_to_copy(world: World) -> None:
    Membership.objects.create(organization=world.neighbour, user=world.member, role=Role.MEMBER)
    page = client_for(world.member).get(reverse("personal_tokens")).content.decode()
    for organization in (world.org, world.neighbour):
        assert f'value="{organization.pk}" readonly' in page
    assert page.count("data-copy=") == 2
    assert "X-KiloCode-OrganizationId" in page
    lonely = client_for(UserFactory()).get(reverse("personal_tokens")).content.decode()
    assert "You belong to no organization" in lonely


# Staff find an organization by a member's email


@pytest.mark.parametrize(
    "changelist",
    [
        "admin:organizations_organization_changelist",
        "admin:dunning_organizationlifecycle_changelist",
    ],
)
def test_staff_find_an_organization_by_a_members_email(world: World, changelist: str) -> None:
    staff = Client()
    staff.force_login(
        get_user_model().objects.create_superuser(email="staff@kilo.test", password="x" * 12)
    )
    page = staff.get(reverse(changelist), {"q": "billing_manager@acme"}).content.decode()
    assert "Acme Robotics" in page
    assert "Globex" not in page
    assert "1 result" in page
