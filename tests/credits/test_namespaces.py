"""Ledger keys live in namespaces: nothing a client sends as a request_id can reach a key the
system uses, and a key that names another operation is refused loudly, never "already done"."""

import logging

import pytest
from django.db.models import Sum

from credits.exceptions import LedgerKeyConflict
from credits.ledger import ledger_credit
from credits.models import CreditAccount, LedgerEntry, Purchase, UsageRecord
from credits.services import account_for
from organizations.models import Organization
from tests.conftest import World, settle
from tests.credits.conftest import fund, seat_everyone
from tests.credits.test_api import SONNET_COST, api, spend
from tests.credits.test_purchases import confirm, save_card

DOLLAR = 1_000_000


def system_key_shapes(organization: Organization) -> list[str]:
    """Every key the system uses or used, spelled the ways it could be: the purchase ids to
    come, the old "purchase:<id>" keys, auto top-ups, grants, refunds, disputes, the purge."""
    after = (Purchase.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
    ids = range(after, after + 3)
    return [
        *(str(n) for n in ids),
        *(f"purchase:{n}" for n in ids),
        *(
            f"{source}:{n}"
            for source in ("auto_topup", "auto-topup", "refund", "dispute")
            for n in ids
        ),
        *(f"grant:{n}" for n in ids),
        f"purge:{organization.pk}",
        "expiry",
        "re_1",
        "dp_1",
        "ch_1",
        "in_1",
    ]


def ledger_sum(account: CreditAccount) -> int:
    return LedgerEntry.objects.filter(account=account).aggregate(total=Sum("amount"))["total"]


def test_every_system_key_shape_as_a_request_id_then_a_purchase_adds_exactly_100(
    world: World, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    seat_everyone(world.org, world.owner)
    save_card(world)
    account = account_for(organization=world.org)
    fund(account, 1 * DOLLAR)
    member = api(world.member, world.org)
    shapes = system_key_shapes(world.org)
    for request_id in shapes:
        response = spend(member, request_id)
        assert response.status_code == 201, (request_id, response.json())
    spent = SONNET_COST * len(shapes)
    account.refresh_from_db()
    assert account.balance == 1 * DOLLAR - spent

    with django_capture_on_commit_callbacks(execute=True):
        page = confirm(world, 10_000).content.decode()
    settle()  # invoice.paid and the rest, delivered as the gateway would: credits nothing more
    assert "Payment received" in page
    account.refresh_from_db()
    assert account.balance == 1 * DOLLAR - spent + 100 * DOLLAR == ledger_sum(account)
    purchase = Purchase.objects.get()
    credit = LedgerEntry.objects.get(account=account, kind="purchase")
    assert (credit.source, credit.idempotency_key, credit.amount) == (
        "purchase",
        str(purchase.pk),
        100 * DOLLAR,
    )
    # Each squatted shape is a usage entry in the usage namespace, nothing else.
    assert set(
        LedgerEntry.objects.filter(account=account, kind="usage").values_list("source", flat=True)
    ) == {"usage"}
    assert UsageRecord.objects.filter(account=account).count() == len(shapes)


def test_an_old_purchase_key_as_a_request_id_is_plain_usage(world: World) -> None:
    """It answered 500 before: the debit's retry path read `entry.usage` of the purchase."""
    seat_everyone(world.org, world.owner)
    save_card(world)
    confirm(world, 5_000)
    purchase = Purchase.objects.get()
    member = api(world.member, world.org)
    for request_id in (str(purchase.pk), f"purchase:{purchase.pk}"):
        first = spend(member, request_id)
        again = spend(member, request_id)
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json() == first.json()
    account = account_for(organization=world.org)
    assert account.balance == 50 * DOLLAR - 2 * SONNET_COST == ledger_sum(account)


def test_the_same_request_id_for_another_request_is_a_conflict(world: World) -> None:
    seat_everyone(world.org, world.owner)
    fund(account_for(organization=world.org), DOLLAR)
    member = api(world.member, world.org)
    assert spend(member, "r-1").status_code == 201
    response = spend(member, "r-1", output_tokens=999)
    assert response.status_code == 409
    assert (response.json()["error"], response.json()["field"]) == (
        "request_id_conflict",
        "request_id",
    )
    assert account_for(organization=world.org).balance == DOLLAR - SONNET_COST


def test_a_key_naming_another_operation_is_refused_and_logged(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    account = account_for(organization=world.org)
    entry, created = ledger_credit(
        account_id=account.pk, amount=5 * DOLLAR, kind="purchase", source="purchase", key="7"
    )
    again, created_again = ledger_credit(
        account_id=account.pk, amount=5 * DOLLAR, kind="purchase", source="purchase", key="7"
    )
    assert (created, created_again, again.pk) == (True, False, entry.pk)
    with caplog.at_level(logging.ERROR), pytest.raises(LedgerKeyConflict):
        ledger_credit(
            account_id=account.pk, amount=9 * DOLLAR, kind="purchase", source="purchase", key="7"
        )
    assert "ledger key conflict" in caplog.text
    # Another namespace is another key.
    ledger_credit(account_id=account.pk, amount=DOLLAR, kind="grant", source="grant", key="7")
    account.refresh_from_db()
    assert account.balance == 6 * DOLLAR == ledger_sum(account)
