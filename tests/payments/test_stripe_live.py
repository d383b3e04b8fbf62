"""StripeGateway against Stripe test mode, run only when STRIPE_TEST_SECRET_KEY is set.

A test clock holds the customer, so the clock can be moved into the middle of the period for a
real proration, and deleting the clock afterwards removes the customer and its subscription. The
product and price are found again by lookup key on the next run.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import stripe
import stripe.test_helpers

from payments.gateway import Charge
from payments.stripe_gateway import STRIPE_API_VERSION, StripeGateway

SECRET_KEY = os.environ.get("STRIPE_TEST_SECRET_KEY", "")

pytestmark = pytest.mark.skipif(
    not SECRET_KEY, reason="STRIPE_TEST_SECRET_KEY is not set: live Stripe test mode skipped"
)

SEAT_LOOKUP_KEY = "kilo_billing_live_test_seat_monthly"
SEAT_AMOUNT = 2000
CLOCK_READY_TIMEOUT = 120


@pytest.fixture
def client() -> stripe.StripeClient:
    assert SECRET_KEY.startswith(("sk_test_", "rk_test_")), "only ever run against test mode"
    return stripe.StripeClient(SECRET_KEY, stripe_version=STRIPE_API_VERSION)


@pytest.fixture
def clock(client: stripe.StripeClient) -> Iterator[stripe.test_helpers.TestClock]:
    created = client.v1.test_helpers.test_clocks.create(
        {"frozen_time": int(time.time()), "name": "kilo-billing live gateway test"}
    )
    try:
        yield created
    finally:
        client.v1.test_helpers.test_clocks.delete(created.id)


def advance(client: stripe.StripeClient, clock: stripe.test_helpers.TestClock, *, to: int) -> None:
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": to})
    deadline = time.monotonic() + CLOCK_READY_TIMEOUT
    while True:
        status = client.v1.test_helpers.test_clocks.retrieve(clock.id).status
        if status == "ready":
            return
        assert status == "advancing", f"test clock {clock.id} is {status}"
        assert time.monotonic() < deadline, f"test clock {clock.id} still advancing"
        time.sleep(2)


def test_it_runs_a_team_plan_through_stripe_test_mode(
    client: stripe.StripeClient, clock: stripe.test_helpers.TestClock
) -> None:
    gateway = StripeGateway(api_key=SECRET_KEY)
    run = uuid.uuid4().hex[:12]
    metadata = {"kilo_live_test": run}

    customer = client.v1.customers.create(
        {
            "name": "Acme Robotics (live test)",
            "email": "billing@acme.example",
            "test_clock": clock.id,
            "metadata": metadata,
        }
    )
    card = client.v1.payment_methods.attach("pm_card_visa", {"customer": customer.id})
    client.v1.customers.update(
        customer.id, {"invoice_settings": {"default_payment_method": card.id}}
    )

    default = gateway.payment_method_default(customer_id=customer.id)
    assert default is not None
    assert (default.id, default.brand, default.last4) == (card.id, "visa", "4242")

    price = gateway.price_ensure(
        lookup_key=SEAT_LOOKUP_KEY, product_name="Kilo live test seat", unit_amount=SEAT_AMOUNT
    )
    assert (price.unit_amount, price.currency, price.interval) == (SEAT_AMOUNT, "usd", "month")

    subscription = gateway.subscription_create(
        customer_id=customer.id,
        price_id=price.id,
        quantity=2,
        metadata=metadata,
        idempotency_key=f"{run}:subscription",
    )
    assert (subscription.status, subscription.quantity) == ("active", 2)
    first = gateway.invoice_retrieve(invoice_id=subscription.latest_invoice)
    assert first.paid
    assert first.amount_paid == 2 * SEAT_AMOUNT
    assert first.subscription == subscription.id

    # Ten days into the period, so the increase is prorated over the remaining part of it.
    advance(client, clock, to=clock.frozen_time + int(timedelta(days=10).total_seconds()))
    proration_date = datetime.fromtimestamp(clock.frozen_time, tz=UTC) + timedelta(days=10)

    preview = gateway.subscription_preview_quantity(
        subscription_id=subscription.id, quantity=5, proration_date=proration_date
    )
    assert 0 < preview.amount_due < 3 * SEAT_AMOUNT
    assert preview.lines
    assert all(line.proration for line in preview.lines)
    assert preview.next_period_amount == 5 * SEAT_AMOUNT

    change = gateway.subscription_change_quantity(
        subscription_id=subscription.id,
        quantity=5,
        proration_date=proration_date,
        idempotency_key=f"{run}:seats:5",
    )
    assert change.subscription.quantity == 5
    assert change.subscription.pending_quantity is None
    assert change.invoice is not None
    assert change.invoice.paid
    assert change.invoice.amount_paid == preview.amount_due

    charge = gateway.charge(
        customer_id=customer.id,
        amount=1000,
        currency="usd",
        description="AI credits top-up (live test)",
        metadata=metadata,
        idempotency_key=f"{run}:credits",
    )
    assert charge.failure is None
    assert charge.paid
    assert charge.invoice.amount_paid == 1000
    assert charge.invoice.metadata == metadata

    invoices = gateway.invoice_list(customer_id=customer.id)
    assert {first.id, change.invoice.id, charge.invoice.id} <= {invoice.id for invoice in invoices}


def _customer(client: stripe.StripeClient, clock: stripe.test_helpers.TestClock, run: str) -> str:
    customer = client.v1.customers.create(
        {
            "name": "Acme Robotics (live test)",
            "email": "billing@acme.example",
            "test_clock": clock.id,
            "metadata": {"kilo_live_test": run},
        }
    )
    return customer.id


def _default_card(client: stripe.StripeClient, customer_id: str, payment_method: str) -> str:
    card = client.v1.payment_methods.attach(payment_method, {"customer": customer_id})
    client.v1.customers.update(
        customer_id, {"invoice_settings": {"default_payment_method": card.id}}
    )
    return card.id


def _credits(gateway: StripeGateway, customer_id: str, key: str, amount: int = 5000) -> Charge:
    return gateway.charge(
        customer_id=customer_id,
        amount=amount,
        currency="usd",
        description="AI credits (live test)",
        metadata={"kind": "credit_purchase"},
        idempotency_key=key,
    )


def test_it_refunds_disputes_authenticates_and_declines_in_stripe_test_mode(
    client: stripe.StripeClient, clock: stripe.test_helpers.TestClock
) -> None:
    gateway = StripeGateway(api_key=SECRET_KEY)
    run = uuid.uuid4().hex[:12]

    # The saved card is the default only: an attached card is not reported.
    plain = _customer(client, clock, run)
    client.v1.payment_methods.attach("pm_card_visa", {"customer": plain})
    assert gateway.payment_method_default(customer_id=plain) is None

    # A refund, partial, found again from its payment; the invoice stays paid.
    _default_card(client, plain, "pm_card_mastercard")
    paid = _credits(gateway, plain, f"{run}:refund")
    assert paid.paid
    refund = gateway.refund_create(
        invoice_id=paid.invoice.id,
        amount=1500,
        reason="requested_by_customer",
        metadata={"kilo_live_test": run},
        idempotency_key=f"{run}:refund:1",
    )
    assert (refund.amount, refund.takes_money_back) == (1500, True)
    assert gateway.payment_invoice_id(payment_intent=refund.payment_intent) == paid.invoice.id
    assert [r.id for r in gateway.refund_list(payment_intent=refund.payment_intent)] == [refund.id]
    assert gateway.invoice_retrieve(invoice_id=paid.invoice.id).status == "paid"

    # 3-D Secure off-session: reported as waiting for the payer, with the hosted page.
    secure = _customer(client, clock, run)
    _default_card(client, secure, "pm_card_authenticationRequired")
    waiting = _credits(gateway, secure, f"{run}:3ds")
    assert waiting.failure is not None
    assert waiting.failure.needs_authentication
    assert waiting.failure.action_url == waiting.invoice.hosted_invoice_url
    attempt = gateway.invoice_last_payment(invoice_id=waiting.invoice.id)
    assert attempt is not None
    assert attempt.needs_authentication

    # A hard decline on a saved card (Stripe's token for it: the card number cannot be attached).
    lost = _customer(client, clock, run)
    card = client.v1.payment_methods.create(
        {"type": "card", "card": {"token": "tok_visa_chargeCustomerFailLostCard"}}
    )
    _default_card(client, lost, card.id)
    declined = _credits(gateway, lost, f"{run}:lost")
    assert declined.failure is not None
    assert (declined.failure.decline_code, declined.failure.hard) == ("lost_card", True)
    assert gateway.invoice_void(invoice_id=declined.invoice.id).status == "void"
    assert gateway.invoice_void(invoice_id=declined.invoice.id).status == "void"

    # A dispute (4000 0000 0000 0259 is disputed as fraudulent), read back from its payment.
    disputed = _customer(client, clock, run)
    _default_card(client, disputed, "pm_card_createDispute")
    bought = _credits(gateway, disputed, f"{run}:dispute")
    assert bought.paid
    payment = client.v1.invoice_payments.list({"invoice": bought.invoice.id, "limit": 1}).data[0]
    intent = str(payment.payment.payment_intent)
    deadline = time.monotonic() + CLOCK_READY_TIMEOUT
    while not (found := client.v1.disputes.list({"payment_intent": intent}).data):
        assert time.monotonic() < deadline, "Stripe opened no dispute"
        time.sleep(2)
    dispute = gateway.dispute_retrieve(dispute_id=found[0].id)
    assert (dispute.amount, dispute.withdraws_funds, dispute.payment_intent) == (5000, True, intent)
