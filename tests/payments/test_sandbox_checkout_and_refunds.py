"""The sandbox follows Stripe for Checkout's delayed payment methods, its 24-hour expiry, and
refunds that change later (docs/sandbox.md lists each sequence with Stripe's page)."""

from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.test import Client

from payments.gateway import GatewayError
from payments.sandbox import engine
from payments.sandbox.gateway import SandboxGateway
from payments.sandbox.models import (
    SandboxCheckoutSession,
    SandboxEvent,
    SandboxInvoice,
    SandboxRefund,
)
from payments.sandbox.objects import refund_json
from tests.payments.sandbox_helpers import GOOD, customer
from tests.payments.test_sandbox import card_form

pytestmark = pytest.mark.django_db
gateway = SandboxGateway()
START = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def events() -> list[tuple[str, dict[str, Any]]]:
    return [
        (event.type, event.payload["data"]["object"])
        for event in SandboxEvent.objects.order_by("delivery_order", "created", "id")
    ]


def event_types() -> list[str]:
    return [event_type for event_type, _ in events()]


def payment_checkout(amount: int = 10_000, currency: str = "usd") -> Any:
    return gateway.checkout_payment(
        customer_id=customer(card=None).id,
        amount=amount,
        currency=currency,
        description="$100.00 of credits",
        metadata={"kind": "credit_purchase", "purchase_id": "7"},
        success_url="http://testserver/done?session={CHECKOUT_SESSION_ID}",
        cancel_url="http://testserver/back",
        idempotency_key=f"checkout-{engine.new_id('k')}",
    )


def subscription_checkout() -> Any:
    price = gateway.price_ensure(
        lookup_key="teams-monthly", product_name="Teams seat", unit_amount=1800
    )
    return gateway.checkout_subscription(
        customer_id=customer(card=None).id,
        price_id=price.id,
        quantity=3,
        metadata={"organization_id": "o"},
        success_url="http://testserver/done",
        cancel_url="http://testserver/back",
        idempotency_key=f"checkout-{engine.new_id('k')}",
    )


def bank_form(account_number: str = "000123456789") -> dict[str, str]:
    return {
        "method": "bank",
        "holder_name": "Jenny Rosen",
        "routing_number": "110000000",
        "account_number": account_number,
        "mandate": "on",
    }


# Checkout expires after 24 hours, in every mode
# ("Checkout Sessions expire 24 hours after creation",
# https://docs.stripe.com/api/checkout/sessions/create#create_checkout_session-expires_at;
# checkout.session.expired, https://docs.stripe.com/api/events/types).


@pytest.mark.parametrize("make", [payment_checkout, subscription_checkout])
def test_every_checkout_expires_after_24_hours_with_its_event(make: Any) -> None:
    with time_machine.travel(START, tick=False):
        session = make()
    with time_machine.travel(START + timedelta(hours=23, minutes=59), tick=False):
        engine.tick()
        assert gateway.checkout_session_retrieve(session_id=session.id).status == "open"
        assert "checkout.session.expired" not in event_types()
    with time_machine.travel(START + timedelta(hours=24), tick=False):
        engine.tick()
        expired = gateway.checkout_session_retrieve(session_id=session.id)
        assert (expired.status, expired.payment_status, expired.url) == ("expired", "unpaid", "")
        [payload] = [obj for kind, obj in events() if kind == "checkout.session.expired"]
        assert (payload["id"], payload["status"]) == (session.id, "expired")
        engine.tick()  # once
        assert event_types().count("checkout.session.expired") == 1
        page = Client().get(session.url)
        assert page.status_code == 410
        assert "This checkout has expired" in page.content.decode()


def test_a_checkout_past_its_24_hours_takes_no_payment_even_before_the_clock_ticks() -> None:
    with time_machine.travel(START, tick=False):
        session = payment_checkout()
    with time_machine.travel(START + timedelta(hours=25), tick=False):
        for form in (card_form(), bank_form()):
            response = Client().post(session.url, form)
            assert response.status_code == 410
        assert event_types().count("checkout.session.expired") == 1
        assert "checkout.session.completed" not in event_types()
        assert not SandboxInvoice.objects.exists()


def test_a_completed_checkout_never_expires() -> None:
    with time_machine.travel(START, tick=False):
        session = payment_checkout()
        Client().post(session.url, card_form())
    with time_machine.travel(START + timedelta(days=3), tick=False):
        engine.tick()
    assert gateway.checkout_session_retrieve(session_id=session.id).status == "complete"
    assert "checkout.session.expired" not in event_types()


# A delayed payment method: ACH Direct Debit with Stripe's test accounts
# (https://docs.stripe.com/testing#ach-direct-debit; "A payment typically takes 4 business days to
# arrive", https://docs.stripe.com/payments/ach-direct-debit/accept-a-payment; the events,
# https://docs.stripe.com/checkout/fulfillment#delayed-notification).


def test_a_bank_debit_completes_the_checkout_unpaid_then_settles_4_days_later() -> None:
    with time_machine.travel(START, tick=False):
        session = payment_checkout()
        assert "Pay by bank" in Client().get(session.url).content.decode()
        response = Client().post(session.url, bank_form("000123456789"))
        assert response["Location"] == f"http://testserver/done?session={session.id}"
        done = gateway.checkout_session_retrieve(session_id=session.id)
        assert (done.status, done.payment_status, done.invoice) == ("complete", "unpaid", "")
        assert done.payment_intent.startswith("pi_")
        assert {
            "payment_intent.created",
            "payment_intent.processing",
            "checkout.session.completed",
        } <= set(event_types())
        completed = next(obj for kind, obj in events() if kind == "checkout.session.completed")
        assert (completed["payment_status"], completed["payment_method_types"]) == (
            "unpaid",
            ["card", "us_bank_account"],
        )
        assert not SandboxInvoice.objects.exists()
    with time_machine.travel(START + timedelta(days=3, hours=23), tick=False):
        assert engine.tick() == 0
    before = len(event_types())
    with time_machine.travel(START + timedelta(days=4), tick=False):
        assert engine.tick() == 1
        settled = gateway.checkout_session_retrieve(session_id=session.id)
        assert settled.payment_status == "paid"
        invoice = SandboxInvoice.objects.get()
        assert (invoice.status, invoice.amount_paid, invoice.payment_intent) == (
            "paid",
            10_000,
            done.payment_intent,
        )
        assert settled.invoice == invoice.id
        assert invoice.metadata == {"kind": "credit_purchase", "purchase_id": "7"}
        later = set(event_types()[before:])
        assert {
            "checkout.session.async_payment_succeeded",
            "invoice.paid",
            "payment_intent.succeeded",
            "charge.succeeded",
        } <= later
        assert "checkout.session.completed" not in later
        charge = next(obj for kind, obj in events() if kind == "charge.succeeded")
        assert charge["payment_method_details"]["type"] == "us_bank_account"
        assert engine.tick() == 0
    # The bank account is not made the customer's default card.
    gateway.checkout_session_save_card(session_id=session.id)
    assert gateway.payment_method_default(customer_id=done.customer) is None


@pytest.mark.parametrize(
    ("account", "code"),
    [("000222222227", "insufficient_funds"), ("000111111113", "account_closed")],
)
def test_a_bank_debit_that_fails_says_so_4_days_later(account: str, code: str) -> None:
    with time_machine.travel(START, tick=False):
        session = payment_checkout()
        Client().post(session.url, bank_form(account))
    with time_machine.travel(START + timedelta(days=4, seconds=1), tick=False):
        engine.tick()
    failed = gateway.checkout_session_retrieve(session_id=session.id)
    assert (failed.status, failed.payment_status, failed.invoice) == ("complete", "unpaid", "")
    assert {"payment_intent.payment_failed", "checkout.session.async_payment_failed"} <= set(
        event_types()
    )
    intent = next(obj for kind, obj in events() if kind == "payment_intent.payment_failed")
    assert intent["status"] == "requires_payment_method"
    assert intent["last_payment_error"]["code"] == f"payment_method_{code}"
    assert not SandboxInvoice.objects.exists()


def test_sandbox_advance_drives_the_bank_debit(settings: Any) -> None:
    settings.STRIPE_SECRET_KEY = ""
    with time_machine.travel(START, tick=False):
        session = payment_checkout()
        Client().post(session.url, bank_form())
        call_command("sandbox_advance", days=4, stdout=StringIO())
        assert gateway.checkout_session_retrieve(session_id=session.id).payment_status == "paid"


def test_the_bank_debit_is_refused_outside_stripes_test_accounts_and_for_subscriptions() -> None:
    session = payment_checkout()
    for form, message in [
        ({**bank_form(), "routing_number": "021000021"}, "test bank accounts only"),
        (bank_form("000123456780"), "test bank accounts only"),
        ({**bank_form(), "mandate": ""}, "This field is required"),
        ({**bank_form(), "account_number": "x" * 10_000}, "at most 20 characters"),
    ]:
        response = Client().post(session.url, form)
        assert response.status_code == 200
        assert message in response.content.decode()
    assert gateway.checkout_session_retrieve(session_id=session.id).status == "open"
    seats = subscription_checkout()
    assert "Pay by bank" not in Client().get(seats.url).content.decode()
    response = Client().post(seats.url, bank_form())
    assert response.status_code == 200
    assert gateway.checkout_session_retrieve(session_id=seats.id).status == "open"
    euros = payment_checkout(currency="eur")
    assert "Pay by bank" not in Client().get(euros.url).content.decode()


# Refunds that change later ("In live mode, refunds are asynchronous: a refund can appear to
# succeed and later fail, or can appear as pending at first and later succeed",
# https://docs.stripe.com/testing#refunds).


def paid_invoice(card: Any = GOOD) -> SandboxInvoice:
    record = customer(card=card)
    charge = gateway.charge(
        customer_id=record.id,
        amount=10_000,
        currency="usd",
        description="credits",
        metadata={},
        idempotency_key=f"charge-{engine.new_id('k')}",
    )
    assert charge.paid
    return SandboxInvoice.objects.get(pk=charge.invoice.id)


@pytest.mark.parametrize(
    ("outcome", "first", "then", "events_then"),
    [
        ("pending", "pending", "succeeded", ["refund.updated"]),
        ("failed", "succeeded", "failed", ["refund.updated", "refund.failed"]),
        ("pending-failed", "pending", "failed", ["refund.updated", "refund.failed"]),
    ],
)
def test_a_refund_changes_an_hour_later(
    outcome: str, first: str, then: str, events_then: list[str]
) -> None:
    with time_machine.travel(START, tick=False):
        invoice = paid_invoice()
        refund = engine.refund_create(invoice, amount=4_000, outcome=outcome)
        assert refund.status == first
        assert {"charge.refunded", "refund.created"} <= set(event_types())
        invoice.refresh_from_db()
        assert invoice.amount_refunded == 4_000  # a pending refund counts against what is left
    with time_machine.travel(START + timedelta(minutes=59), tick=False):
        assert engine.tick() == 0
    before = len(event_types())
    with time_machine.travel(START + timedelta(hours=1), tick=False):
        assert engine.tick() == 1
    refund.refresh_from_db()
    assert (refund.status, refund.next_status, refund.changes_at) == (then, "", None)
    assert sorted(event_types()[before:]) == sorted(events_then)
    assert {obj["status"] for _, obj in events()[before:]} == {then}
    invoice.refresh_from_db()
    # A failed refund returned nothing: the charge has the money to refund again.
    assert invoice.amount_refunded == (0 if then == "failed" else 4_000)
    if then == "failed":
        assert refund_json(refund)["failure_reason"] == "expired_or_canceled_card"
        assert gateway.refund_list(payment_intent=invoice.payment_intent)[0].status == "failed"
    assert engine.tick() == 0


@pytest.mark.parametrize(
    ("number", "first", "then"),
    [("4000000000007726", "pending", "succeeded"), ("4000000000005126", "succeeded", "failed")],
)
def test_stripes_test_cards_for_asynchronous_refunds(number: str, first: str, then: str) -> None:
    card = engine.Card(number=number, exp_month=12, exp_year=2040, cvc="123")
    with time_machine.travel(START, tick=False):
        invoice = paid_invoice(card)
        refund = gateway.refund_create(
            invoice_id=invoice.id,
            amount=10_000,
            reason="requested_by_customer",
            metadata={},
            idempotency_key="staff-refund-1",
        )
        assert refund.status == first
    with time_machine.travel(START + timedelta(hours=1), tick=False):
        engine.tick()
    assert SandboxRefund.objects.get().status == then


def test_sandbox_refund_takes_an_outcome(settings: Any) -> None:
    settings.STRIPE_SECRET_KEY = ""
    invoice = paid_invoice()
    out = StringIO()
    call_command(
        "sandbox_refund", invoice=invoice.number, amount_usd="10", outcome="pending", stdout=out
    )
    assert "(re_" in out.getvalue()
    assert "pending; it becomes succeeded at" in out.getvalue()
    with pytest.raises(CommandError):
        call_command("sandbox_refund", invoice=invoice.number, outcome="sideways")
    with pytest.raises(GatewayError, match="goes one of these ways"):
        engine.refund_create(invoice, amount=100, outcome="sideways")
    assert SandboxRefund.objects.get().status == "pending"


def test_absurd_checkout_ids_are_404() -> None:
    for session_id in ["x" * 5_000, "cs_test_nothing", "0"]:
        assert Client().get(f"/sandbox/checkout/{session_id}/").status_code == 404
        assert Client().post(f"/sandbox/checkout/{session_id}/", bank_form()).status_code == 404
    assert not SandboxCheckoutSession.objects.exists()
