"""Refunds that change after they are made (https://docs.stripe.com/testing#refunds: "a refund can
appear to succeed and later fail, or can appear as pending at first and later succeed"). The
rule (docs/decisions.md): a refund takes its credits back when it is created, pending or not, as
Stripe takes the money from the balance then; one that fails later gives them back under its
own key (`<refund id>:failed`), the money having stayed with us. Any order, any repeat."""

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.core.management import call_command
from django.urls import reverse

from credits.models import LedgerEntry, Purchase, PurchaseReversal
from credits.services import purchase_refund, purchase_refund_terms
from payments.sandbox import engine
from payments.sandbox.engine import Card
from payments.sandbox.models import SandboxRefund
from tests.conftest import World, client_for, settle
from tests.credits.test_purchases import save_card
from tests.credits.test_refunds_and_disputes import balance, bought
from tests.credits.test_reversals_before_credit import deliver, held, types
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

DOLLAR = 1_000_000
PENDING_REFUNDS = Card(number="4000000000007726", exp_month=12, exp_year=2040, cvc="123")
REFUNDS_FAIL = Card(number="4000000000005126", exp_month=12, exp_year=2040, cvc="123")


def refund_row(purchase: Purchase) -> str:
    page = client_for(purchase.created_by).get(
        reverse("org_credits", args=[purchase.account.organization_id])
    )
    return page.content.decode()


def an_hour_later(capture: Any) -> None:
    with time_machine.travel(engine.now() + timedelta(hours=1, seconds=1), tick=False):
        engine.tick()
        with capture(execute=True):
            settle()


def test_a_pending_refund_takes_the_credits_back_at_once_and_succeeds_later(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    save_card(world)
    purchase = bought(world, 100)
    call_command(
        "sandbox_refund", invoice=purchase.invoice_number, amount_usd="40", outcome="pending"
    )
    with django_capture_on_commit_callbacks(execute=True):
        settle()
    assert balance(world) == 60 * DOLLAR
    assert PurchaseReversal.objects.get().status == "pending"
    assert "Paid; refunded $40.00 (pending)" in refund_row(purchase)
    an_hour_later(django_capture_on_commit_callbacks)
    assert balance(world) == 60 * DOLLAR
    assert PurchaseReversal.objects.get().status == "succeeded"
    assert "Paid; refunded $40.00</td>" in refund_row(purchase)
    assert LedgerEntry.objects.filter(kind="refund").count() == 1
    assert len([m for m in mail.outbox if m.subject.startswith("Refund")]) == 1


@pytest.mark.parametrize("outcome", ["failed", "pending-failed"])
def test_a_refund_that_fails_later_gives_the_credits_back(
    world: World, outcome: str, django_capture_on_commit_callbacks: Any
) -> None:
    save_card(world)
    purchase = bought(world, 100)
    call_command("sandbox_refund", invoice=purchase.invoice_number, outcome=outcome)
    with django_capture_on_commit_callbacks(execute=True):
        settle()
    assert balance(world) == 0  # taken back at once, pending or not
    an_hour_later(django_capture_on_commit_callbacks)
    assert balance(world) == 100 * DOLLAR
    refund = SandboxRefund.objects.get()
    assert sorted(
        LedgerEntry.objects.filter(kind="refund").values_list("idempotency_key", "amount")
    ) == [(refund.id, -100 * DOLLAR), (f"{refund.id}:failed", 100 * DOLLAR)]
    assert PurchaseReversal.objects.get().status == "failed"
    assert "A refund of $100.00 failed: credits given back" in [m.subject for m in mail.outbox]
    # The money stayed with us: the purchase can be refunded again, all of it.
    purchase.refresh_from_db()
    assert purchase_refund_terms(purchase=purchase).refundable == 10_000


def test_a_failed_refund_told_before_it_was_made_moves_nothing(world: World) -> None:
    """refund.failed first, then charge.refunded and refund.created, each twice: the refund is
    read from the gateway (failed), so the credits are never taken, never given."""
    save_card(world)
    purchase = bought(world, 100)
    call_command("sandbox_refund", invoice=purchase.invoice_number, outcome="failed")
    made = held()
    with time_machine.travel(engine.now() + timedelta(hours=1, seconds=1), tick=False):
        engine.tick()
        failed = held()
        assert "refund.failed" in types(failed)
        deliver(list(reversed(failed)) + failed)
        deliver(made + list(reversed(made)))
    assert balance(world) == 100 * DOLLAR
    assert not LedgerEntry.objects.filter(kind="refund").exists()
    assert PurchaseReversal.objects.get().status == "failed"


def test_a_staff_refund_of_a_card_whose_refunds_are_pending(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    """Stripe's test card 4000 0000 0000 7726: its refunds begin pending."""
    save_card(world, PENDING_REFUNDS)
    purchase = bought(world, 50)
    staff = UserFactory(email="staff@kilo.test", is_staff=True)
    refund = purchase_refund(
        actor=staff,
        purchase=purchase,
        amount_cents=5_000,
        reason="requested_by_customer",
        note="asked by mail",
        idempotency_key="k",
    )
    assert refund.status == "pending"
    assert balance(world) == 0
    an_hour_later(django_capture_on_commit_callbacks)
    assert PurchaseReversal.objects.get().status == "succeeded"
    assert balance(world) == 0


def test_a_card_whose_refunds_fail_gives_the_credits_back_an_hour_later(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    """Stripe's test card 4000 0000 0000 5126: its refunds succeed, then fail."""
    save_card(world, REFUNDS_FAIL)
    purchase = bought(world, 50)
    call_command("sandbox_refund", invoice=purchase.invoice_number)
    with django_capture_on_commit_callbacks(execute=True):
        settle()
    assert balance(world) == 0
    an_hour_later(django_capture_on_commit_callbacks)
    assert balance(world) == 50 * DOLLAR
