"""A refund or a chargeback that arrives before its purchase is credited is never dropped (issue
21, defect 1): the purchase is credited first, through the same service as the completion
webhook (idempotent by the purchase's ledger key), then the reversal is applied.

Stripe promises no order: "Stripe doesn't guarantee the delivery of events in the order that
they're generated" (https://docs.stripe.com/webhooks#event-ordering). A refund can be made in
the dashboard before `checkout.session.completed` is processed (the buyer never returned from
Checkout, the completion handler failed once), and an `invoice.paid` of a purchase paid on
Stripe's hosted invoice page after 3-D Secure can come after the dispute of its charge. Each test
delivers the events through the real endpoint (signed) and dispatch, reversals first, each
twice, the completion a day late."""

import uuid
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from credits.models import LedgerEntry, Purchase, PurchaseReversal
from credits.services import account_for
from payments.sandbox.models import SandboxEvent, SandboxInvoice
from tests.conftest import World, client_for
from tests.credits.stripe_account import StripeAccount
from tests.credits.test_purchases import save_card
from tests.invoices.test_sync import post_event, process_pending
from tests.payments.sandbox_helpers import AUTHENTICATION, GOOD

pytestmark = pytest.mark.django_db

DOLLAR = 1_000_000


def held() -> list[dict[str, Any]]:
    """The sandbox's events not delivered yet, in the order it would send them, taken out of its
    outbox so that the test decides when and in which order they arrive."""
    events = list(
        SandboxEvent.objects.filter(delivered_at__isnull=True).order_by(
            "delivery_order", "created", "id"
        )
    )
    SandboxEvent.objects.filter(pk__in=[event.pk for event in events]).update(
        delivered_at=timezone.now(), next_attempt_at=None
    )
    return [event.payload for event in events]


def deliver(payloads: list[dict[str, Any]]) -> None:
    """Each event to /stripe/webhook/, signed, then processed as the worker would."""
    for payload in payloads:
        assert post_event(payload) == 200
    process_pending()


def types(payloads: list[dict[str, Any]]) -> set[str]:
    return {payload["type"] for payload in payloads}


def ledger(world: World) -> list[tuple[str, int]]:
    account = account_for(organization=world.org)
    return sorted(
        LedgerEntry.objects.filter(account=account).values_list("kind", "amount"),
        key=lambda row: (row[0], row[1]),
    )


def checkout_paid_but_not_delivered(world: World, amount_cents: int) -> Purchase:
    """Bought through Checkout (no saved card), paid on its page; none of its events delivered
    and the buyer never came back to the purchase page."""
    response = client_for(world.owner).post(
        reverse("org_confirm", args=[world.org.pk]),
        {"amount_cents": amount_cents, "key": str(uuid.uuid4())},
    )
    checkout_url = response["Location"]
    assert "/sandbox/checkout/" in checkout_url
    paid = Client().post(checkout_url, {"number": GOOD.number, "expiry": "12 / 40", "cvc": "123"})
    assert paid.status_code == 302
    purchase = Purchase.objects.get()
    assert purchase.status == "pending"
    return purchase


def sandbox_invoice_of(purchase: Purchase) -> SandboxInvoice:
    return SandboxInvoice.objects.get(metadata__purchase_id=str(purchase.pk))


def test_a_refund_that_arrives_before_the_checkout_is_credited_is_applied(world: World) -> None:
    purchase = checkout_paid_but_not_delivered(world, 10_000)
    completion = held()
    assert {"checkout.session.completed", "invoice.paid"} <= types(completion)
    call_command("sandbox_refund", invoice=sandbox_invoice_of(purchase).number)
    refund = held()
    assert {"charge.refunded", "refund.created"} <= types(refund)

    deliver(list(reversed(refund)) + refund)
    # The refund is applied at once: the purchase was credited first, then refunded.
    assert account_for(organization=world.org).balance == 0
    assert ledger(world) == [("purchase", 100 * DOLLAR), ("refund", -100 * DOLLAR)]
    with time_machine.travel(timezone.now() + timedelta(days=1), tick=False):
        deliver(list(reversed(completion)) + completion)
    purchase.refresh_from_db()
    assert purchase.status == "paid"
    assert account_for(organization=world.org).balance == 0
    assert ledger(world) == [("purchase", 100 * DOLLAR), ("refund", -100 * DOLLAR)]
    assert PurchaseReversal.objects.get().purchase == purchase


def test_a_chargeback_that_arrives_before_invoice_paid_is_applied(world: World) -> None:
    # A purchase with the saved card that the bank wanted confirmed (3-D Secure): paid on the
    # bank's page, but its invoice.paid comes after the dispute of its charge.
    save_card(world, AUTHENTICATION)
    client_for(world.owner).post(
        reverse("org_confirm", args=[world.org.pk]),
        {"amount_cents": 5_000, "key": str(uuid.uuid4())},
    )
    purchase = Purchase.objects.get()
    assert purchase.awaiting_authentication
    deliver(held())  # the card saved, the charge waiting for the bank: processed long ago
    Client().post(purchase.action_url, {"outcome": "complete"})
    completion = held()
    assert "invoice.paid" in types(completion)
    purchase.refresh_from_db()
    assert purchase.status == "pending"
    call_command("sandbox_dispute", invoice=purchase.invoice_number)
    dispute = held()
    assert "charge.dispute.created" in types(dispute)

    deliver(dispute + list(reversed(dispute)))
    assert account_for(organization=world.org).balance == 0
    assert ledger(world) == [("dispute", -50 * DOLLAR), ("purchase", 50 * DOLLAR)]
    with time_machine.travel(timezone.now() + timedelta(days=1), tick=False):
        deliver(completion + list(reversed(completion)))
    assert account_for(organization=world.org).balance == 0
    assert ledger(world) == [("dispute", -50 * DOLLAR), ("purchase", 50 * DOLLAR)]


# The same through Stripe: Stripe-shaped events, the real StripeGateway over a stateful fake of
# Stripe's API (tests/credits/stripe_account.py, the `stripe_account` fixture).


def bought_through_stripe_checkout(world: World, amount_cents: int) -> Purchase:
    response = client_for(world.owner).post(
        reverse("org_confirm", args=[world.org.pk]),
        {"amount_cents": amount_cents, "key": str(uuid.uuid4())},
    )
    assert response["Location"].startswith("https://checkout.stripe.com/c/pay/cs_test_")
    return Purchase.objects.get(amount_cents=amount_cents)


def test_through_stripe_a_refund_and_a_chargeback_before_checkout_completed(
    world: World, stripe_account: StripeAccount
) -> None:
    hundred = bought_through_stripe_checkout(world, 10_000)
    fifty = bought_through_stripe_checkout(world, 5_000)
    completions = stripe_account.checkout_paid(
        hundred.checkout_session_id
    ) + stripe_account.checkout_paid(fifty.checkout_session_id)
    intents = {
        purchase.pk: stripe_account.objects[purchase.checkout_session_id]["payment_intent"]
        for purchase in (hundred, fifty)
    }
    # Made in the dashboard and by the cardholder's bank before anything reached the product.
    refund = stripe_account.refund(intents[hundred.pk], 10_000)
    dispute = stripe_account.dispute(intents[fifty.pk], 5_000)

    deliver(list(reversed(refund)) + dispute + refund + list(reversed(dispute)))
    assert account_for(organization=world.org).balance == 0
    assert ledger(world) == [
        ("dispute", -50 * DOLLAR),
        ("purchase", 50 * DOLLAR),
        ("purchase", 100 * DOLLAR),
        ("refund", -100 * DOLLAR),
    ]
    with time_machine.travel(timezone.now() + timedelta(days=1), tick=False):
        deliver(list(reversed(completions)) + completions)
    for purchase in (hundred, fifty):
        purchase.refresh_from_db()
        assert (purchase.status, purchase.payment_intent_id) == ("paid", intents[purchase.pk])
        assert purchase.invoice_number.startswith("KILO-")
    assert account_for(organization=world.org).balance == 0
    assert len(ledger(world)) == 4
    assert sorted(PurchaseReversal.objects.values_list("kind", "amount_cents")) == [
        ("dispute", 5_000),
        ("refund", 10_000),
    ]
    # The card Checkout collected became the customer's default, once the completion came.
    customer = stripe_account.objects[world.org.billing_profile.gateway_customer_id]
    assert customer["invoice_settings"]["default_payment_method"].startswith("pm_")
