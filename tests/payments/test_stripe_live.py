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
