from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
import requests
import time_machine
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from payments.gateway import CardError, CustomerDetails, GatewayError
from payments.models import WebhookEvent
from payments.sandbox import delivery, engine, services
from payments.sandbox.gateway import SandboxGateway
from payments.sandbox.models import (
    SandboxCheckoutSession,
    SandboxEvent,
    SandboxInvoice,
    SandboxSubscription,
)
from tests.conftest import settle
from tests.payments.sandbox_helpers import (
    FAILS_ON_CHARGE,
    GOOD,
    INSUFFICIENT_FUNDS,
    customer,
    seats,
)

pytestmark = pytest.mark.django_db
gateway = SandboxGateway()
START = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def event_types() -> list[str]:
    return list(
        SandboxEvent.objects.order_by("delivery_order", "created", "id").values_list(
            "type", flat=True
        )
    )


def card_form(card=GOOD) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {
        "number": card.number,
        "expiry": f"{card.exp_month} / {card.exp_year % 100}",
        "cvc": card.cvc,
    }


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (START, 5400),  # the first second: the whole period, 3 × $18.00
        (START + timedelta(days=10), 3600),  # day 10 of 30: 3 × $18 × 20/30 = $36.00
        (START + timedelta(days=15), 2700),  # the middle
        (START + timedelta(days=30) - timedelta(hours=1), 8),  # last hour: 5400 / 720 = 7.5 → 8
        (START + timedelta(days=30), 0),
    ],
)
def test_it_prorates_to_the_second(at: datetime, expected: int) -> None:
    amount = engine.proration_amount(
        unit_amount=1800,
        quantity_change=3,
        period_start=START,
        period_end=START + timedelta(days=30),
        at=at,
    )
    assert amount == expected


def test_months_keep_their_day_and_clamp() -> None:
    anchor = datetime(2027, 1, 31, 9, 30, tzinfo=UTC)
    assert engine.add_months(anchor, 1) == datetime(2027, 2, 28, 9, 30, tzinfo=UTC)
    assert engine.next_period_end(anchor, datetime(2027, 2, 28, 9, 30, tzinfo=UTC)) == datetime(
        2027, 3, 31, 9, 30, tzinfo=UTC
    )
    assert engine.add_months(datetime(2027, 12, 15, tzinfo=UTC), 1) == datetime(
        2028, 1, 15, tzinfo=UTC
    )


def test_a_charge_with_the_saved_card_is_an_invoice_paid_off_session() -> None:
    record = customer()
    SandboxEvent.objects.all().delete()
    result = gateway.charge(
        customer_id=record.id,
        amount=10000,
        currency="usd",
        description="$100.00 of credits",
        metadata={"kind": "credits"},
        idempotency_key="buy-1",
    )
    assert result.paid
    assert result.invoice.amount_paid == 10000
    assert result.invoice.number.startswith("KB-")
    assert result.invoice.billing_reason == "manual"
    # The events Stripe sends for it (https://docs.stripe.com/billing/subscriptions/overview,
    # "Invoice lifecycle"; https://docs.stripe.com/api/events/types), in their usual order.
    assert event_types() == [
        "invoiceitem.created",
        "invoice.created",
        "invoice.finalized",
        "payment_intent.created",
        "charge.succeeded",
        "payment_intent.succeeded",
        "invoice_payment.paid",
        "invoice.paid",
        "invoice.payment_succeeded",
        "invoice.updated",
    ]
    again = gateway.charge(
        customer_id=record.id,
        amount=10000,
        currency="usd",
        description="$100.00 of credits",
        metadata={},
        idempotency_key="buy-1",
    )
    assert again.invoice.id == result.invoice.id
    assert SandboxInvoice.objects.count() == 1


def test_a_charge_on_a_failing_card_leaves_the_invoice_open() -> None:
    record = customer(FAILS_ON_CHARGE)
    result = gateway.charge(
        customer_id=record.id,
        amount=5000,
        currency="usd",
        description="credits",
        metadata={},
        idempotency_key="buy-2",
    )
    assert not result.paid
    assert result.failure is not None
    assert result.failure.code == "card_declined"
    assert (result.invoice.status, result.invoice.attempt_count) == ("open", 1)
    assert "invoice.payment_failed" in event_types()
    assert result.invoice.next_payment_attempt is None  # one-off invoices are not retried


def test_a_declining_card_cannot_be_saved() -> None:
    record = customer(card=None)
    with pytest.raises(CardError) as declined:
        engine.payment_method_attach(customer=record, card=INSUFFICIENT_FUNDS)
    assert declined.value.decline_code == "insufficient_funds"
    assert gateway.payment_method_default(customer_id=record.id) is None


def test_checkout_in_payment_mode_reaches_the_webhook_once(world) -> None:  # type: ignore[no-untyped-def]
    record = customer(card=None)
    session = gateway.checkout_payment(
        customer_id=record.id,
        amount=10000,
        currency="usd",
        description="$100.00 of credits",
        metadata={"organization_id": "o"},
        success_url="http://testserver/done?session={CHECKOUT_SESSION_ID}",
        cancel_url="http://testserver/back",
        idempotency_key="checkout-1",
    )
    page = Client().get(session.url)
    assert "$100.00" in page.content.decode()
    response = Client().post(session.url, card_form())
    assert response["Location"] == f"http://testserver/done?session={session.id}"
    settle()
    completed = WebhookEvent.objects.get(type="checkout.session.completed")
    assert completed.status == WebhookEvent.Status.PROCESSED
    assert completed.object["payment_status"] == "paid"
    assert completed.object["invoice"]
    paid = WebhookEvent.objects.get(type="invoice.paid")
    assert paid.object["amount_paid"] == 10000
    # Checkout attached the card but, as with Stripe, did not make it the default: "Checkout will
    # attach the payment method to the Customer" (https://docs.stripe.com/api/checkout/sessions/
    # create#create_checkout_session-payment_intent_data-setup_future_usage). The product does.
    assert gateway.payment_method_default(customer_id=record.id) is None
    gateway.checkout_session_save_card(session_id=session.id)
    settle()
    method = gateway.payment_method_default(customer_id=record.id)
    assert method is not None
    assert (method.brand, method.last4) == ("visa", "4242")
    assert not SandboxEvent.objects.filter(delivered_at__isnull=True).exists()


def test_checkout_with_a_card_that_fails_sends_the_failure_events(world) -> None:  # type: ignore[no-untyped-def]
    record = customer(card=None)
    session = gateway.checkout_payment(
        customer_id=record.id,
        amount=5000,
        currency="usd",
        description="credits",
        metadata={},
        success_url="http://testserver/done",
        cancel_url="http://testserver/back",
        idempotency_key="checkout-2",
    )
    response = Client().post(session.url, card_form(FAILS_ON_CHARGE))
    assert response.status_code == 200
    assert "Your card was declined." in response.content.decode()
    settle()
    assert WebhookEvent.objects.filter(type="payment_intent.payment_failed").count() == 1
    assert not WebhookEvent.objects.filter(type="checkout.session.completed").exists()
    assert gateway.checkout_session_retrieve(session_id=session.id).status == "open"
    assert gateway.payment_method_default(customer_id=record.id) is None


def test_checkout_in_subscription_mode_starts_an_active_subscription(world) -> None:  # type: ignore[no-untyped-def]
    record = customer(card=None)
    price = gateway.price_ensure(
        lookup_key="teams-monthly", product_name="Teams seat", unit_amount=1800
    )
    session = gateway.checkout_subscription(
        customer_id=record.id,
        price_id=price.id,
        quantity=4,
        metadata={"organization_id": "o"},
        success_url="http://testserver/done",
        cancel_url="http://testserver/back",
        idempotency_key="checkout-3",
    )
    Client().post(session.url, card_form())
    settle()
    done = gateway.checkout_session_retrieve(session_id=session.id)
    subscription = gateway.subscription_retrieve(subscription_id=done.subscription)
    assert (subscription.status, subscription.quantity) == ("active", 4)
    created = WebhookEvent.objects.get(type="invoice.paid")
    assert created.object["billing_reason"] == "subscription_create"
    assert created.object["amount_paid"] == 7200
    assert WebhookEvent.objects.filter(type="customer.subscription.updated").exists()
    assert WebhookEvent.objects.filter(type="checkout.session.completed").count() == 1


def test_adding_seats_charges_the_proration_at_once_and_keeps_the_billing_date() -> None:
    with time_machine.travel(START, tick=False):
        record = customer()
        subscription = seats(record, quantity=5)
    with time_machine.travel(START + timedelta(days=10), tick=False):
        at = START + timedelta(days=10)
        preview = gateway.subscription_preview_quantity(
            subscription_id=subscription.id, quantity=8, proration_date=at
        )
        assert preview.amount_due == 3600
        assert preview.next_period_amount == 8 * 1800
        change = gateway.subscription_change_quantity(
            subscription_id=subscription.id, quantity=8, proration_date=at, idempotency_key="add-3"
        )
    assert change.invoice is not None
    assert (change.invoice.amount_paid, change.invoice.billing_reason) == (
        3600,
        "subscription_update",
    )
    assert change.invoice.lines[0].proration
    assert change.subscription.quantity == 8
    assert change.subscription.current_period_end == subscription.current_period_end
    assert change.subscription.current_period_start == subscription.current_period_start


def test_a_failed_seat_addition_changes_nothing_and_expires() -> None:
    with time_machine.travel(START, tick=False):
        record = customer()
        subscription = seats(record, quantity=5)
        engine.payment_method_attach(customer=record, card=FAILS_ON_CHARGE)
        with pytest.raises(CardError):
            gateway.subscription_change_quantity(
                subscription_id=subscription.id,
                quantity=6,
                proration_date=None,
                idempotency_key="add-1",
            )
        pending = gateway.subscription_retrieve(subscription_id=subscription.id)
        assert (pending.quantity, pending.pending_quantity) == (5, 6)
    with time_machine.travel(START + timedelta(hours=23, minutes=1), tick=False):
        engine.tick()
    after = gateway.subscription_retrieve(subscription_id=subscription.id)
    assert (after.quantity, after.pending_quantity) == (5, None)
    assert SandboxInvoice.objects.get(billing_reason="subscription_update").status == "void"


def test_removing_seats_has_no_proration_and_no_invoice() -> None:
    record = customer()
    subscription = seats(record, quantity=5)
    change = gateway.subscription_change_quantity(
        subscription_id=subscription.id, quantity=3, proration_date=None, idempotency_key="remove-2"
    )
    assert change.invoice is None
    assert change.subscription.quantity == 3
    assert SandboxInvoice.objects.count() == 1


def test_renewals_bill_every_month_on_the_same_day() -> None:
    with time_machine.travel(datetime(2027, 1, 31, 9, 0, tzinfo=UTC), tick=False):
        record = customer()
        subscription = seats(record, quantity=2)
    with time_machine.travel(datetime(2027, 2, 28, 10, 1, tzinfo=UTC), tick=False):
        engine.tick()
    renewed = gateway.subscription_retrieve(subscription_id=subscription.id)
    assert renewed.current_period_start == datetime(2027, 2, 28, 9, 0, tzinfo=UTC)
    assert renewed.current_period_end == datetime(2027, 3, 31, 9, 0, tzinfo=UTC)
    cycle = SandboxInvoice.objects.get(billing_reason="subscription_cycle")
    assert (cycle.status, cycle.amount_paid) == ("paid", 3600)


def test_a_failing_renewal_is_retried_then_left_unpaid_and_paying_restores_it() -> None:
    with time_machine.travel(START, tick=False):
        record = customer()
        subscription = seats(record, quantity=1)
        engine.payment_method_attach(customer=record, card=FAILS_ON_CHARGE)
    renewal = START + timedelta(days=30, hours=1)
    with time_machine.travel(renewal, tick=False):
        engine.tick()
    invoice = SandboxInvoice.objects.get(billing_reason="subscription_cycle")
    assert (invoice.status, invoice.attempt_count) == ("open", 1)
    assert gateway.subscription_retrieve(subscription_id=subscription.id).status == "past_due"
    for days, attempts in ((1, 2), (3, 3), (5, 4)):
        with time_machine.travel(renewal + timedelta(days=days, minutes=1), tick=False):
            engine.tick()
        invoice.refresh_from_db()
        assert invoice.attempt_count == attempts
    assert invoice.next_payment_attempt is None
    assert gateway.subscription_retrieve(subscription_id=subscription.id).status == "unpaid"
    engine.payment_method_attach(customer=record, card=GOOD)
    paid = gateway.invoice_pay(invoice_id=invoice.id, idempotency_key="pay-now")
    assert paid.paid
    assert gateway.subscription_retrieve(subscription_id=subscription.id).status == "active"


def test_pay_now_with_a_failing_card_raises_and_counts_the_attempt() -> None:
    record = customer(FAILS_ON_CHARGE)
    charge = gateway.charge(
        customer_id=record.id,
        amount=100,
        currency="usd",
        description="x",
        metadata={},
        idempotency_key="c",
    )
    with pytest.raises(CardError):
        gateway.invoice_pay(invoice_id=charge.invoice.id, idempotency_key="p1")
    assert SandboxInvoice.objects.get(pk=charge.invoice.id).attempt_count == 2
    with pytest.raises(CardError):
        gateway.invoice_pay(invoice_id=charge.invoice.id, idempotency_key="p1")  # the same answer
    assert SandboxInvoice.objects.get(pk=charge.invoice.id).attempt_count == 2


def test_cancel_at_period_end_ends_it_and_resume_undoes_it() -> None:
    with time_machine.travel(START, tick=False):
        record = customer()
        subscription = seats(record)
        assert gateway.subscription_cancel_at_period_end(
            subscription_id=subscription.id
        ).cancel_at_period_end
        assert not gateway.subscription_resume(subscription_id=subscription.id).cancel_at_period_end
        gateway.subscription_cancel_at_period_end(subscription_id=subscription.id)
    with time_machine.travel(START + timedelta(days=31), tick=False):
        engine.tick()
    assert gateway.subscription_retrieve(subscription_id=subscription.id).status == "canceled"
    assert "customer.subscription.deleted" in event_types()
    with pytest.raises(GatewayError):
        gateway.subscription_resume(subscription_id=subscription.id)


def test_a_first_payment_that_fails_leaves_no_subscription() -> None:
    record = customer(FAILS_ON_CHARGE)
    with pytest.raises(CardError):
        seats(record)
    assert not SandboxSubscription.objects.exists()


def test_events_are_redelivered_with_the_same_id_until_accepted(
    monkeypatch: pytest.MonkeyPatch, db
) -> None:  # type: ignore[no-untyped-def]
    answers = [(500, "down"), (200, "ok")]
    seen: list[str] = []

    def flaky(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        seen.append(body.decode())
        return answers.pop(0)

    monkeypatch.setattr(delivery, "post", flaky)
    record = customer(card=None)
    gateway.customer_update(
        customer_id=record.id, details=CustomerDetails(name="Acme", email="a@acme.test")
    )
    event = SandboxEvent.objects.get(type="customer.updated")
    assert not delivery.sandbox_event_deliver(event_id=event.id)
    event.refresh_from_db()
    assert event.next_attempt_at is not None
    assert delivery.undelivered_event_ids() == []  # not yet due: backoff
    with time_machine.travel(event.next_attempt_at + timedelta(seconds=1)):
        assert delivery.sandbox_events_redeliver() == 1
    assert seen[0] == seen[1]
    event.refresh_from_db()
    assert event.delivered_at is not None
    assert event.attempts == 2


def test_the_hosted_invoice_page_and_pdf(db) -> None:  # type: ignore[no-untyped-def]
    record = customer()
    charge = gateway.charge(
        customer_id=record.id,
        amount=12345,
        currency="usd",
        description="Credits",
        metadata={},
        idempotency_key="x",
    )
    page = Client().get(charge.invoice.hosted_invoice_url).content.decode()
    assert charge.invoice.number in page
    assert "$123.45" in page
    pdf = Client().get(charge.invoice.invoice_pdf)
    assert pdf["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-1.4")
    assert charge.invoice.number.encode() in pdf.content


def test_the_payment_method_page_needs_a_signed_link(db) -> None:  # type: ignore[no-untyped-def]
    record = customer(FAILS_ON_CHARGE)
    url = gateway.payment_method_update_url(
        customer_id=record.id, return_url="http://testserver/back"
    )
    response = Client().post(url, card_form(GOOD))
    assert response["Location"] == "http://testserver/back"
    method = gateway.payment_method_default(customer_id=record.id)
    assert method is not None
    assert method.last4 == "4242"
    forged = reverse("sandbox_payment_method", args=["forged-token"])
    assert Client().get(forged).status_code == 404


# The hard instants of a calendar: the last hour of a 31-day month, 28 February of a common
# year, 29 February of a leap year, the last half hour of a year.
CALENDAR_EDGES = [
    datetime(2026, 12, 8, 2, 0, tzinfo=UTC),  # a 31-day month: `--days 31` lands on a draft
    datetime(2027, 1, 31, 23, 30, tzinfo=UTC),
    datetime(2027, 2, 28, 12, 0, tzinfo=UTC),
    datetime(2028, 2, 29, 12, 0, tzinfo=UTC),
    datetime(2026, 12, 31, 23, 30, tzinfo=UTC),
]


@pytest.mark.parametrize("start", CALENDAR_EDGES, ids=lambda at: f"{at:%Y-%m-%dT%H:%M}")
def test_sandbox_advance_to_the_renewal_charges_it_whatever_the_month(
    settings: Any, start: datetime
) -> None:
    settings.STRIPE_SECRET_KEY = ""
    with time_machine.travel(start, tick=False):
        record = customer()
        subscription = seats(record, quantity=2)
        call_command("sandbox_advance", to="renewal", stdout=StringIO())
        renewal = SandboxInvoice.objects.get(billing_reason="subscription_cycle")
        assert renewal.status == "paid"
        renewed = gateway.subscription_retrieve(subscription_id=subscription.id)
        assert renewed.current_period_start == subscription.current_period_end
        # Stripe finalizes a renewal an hour after creating it; the clock lands just past that.
        assert engine.now() == subscription.current_period_end + timedelta(hours=1, seconds=1)


def test_sandbox_advance_by_days_moves_the_clock_and_runs_what_is_due(settings) -> None:  # type: ignore[no-untyped-def]
    settings.STRIPE_SECRET_KEY = ""
    with time_machine.travel(datetime(2026, 4, 10, 12, 0, tzinfo=UTC), tick=False):
        record = customer()
        seats(record, quantity=2)
        call_command("sandbox_advance", days=30, stdout=StringIO())  # 10 May 12:00: the end
        assert SandboxInvoice.objects.get(billing_reason="subscription_cycle").status == "draft"
        call_command("sandbox_advance", hours=1, stdout=StringIO())
        assert SandboxInvoice.objects.get(billing_reason="subscription_cycle").status == "paid"


def test_sandbox_advance_to_the_next_retry(settings) -> None:  # type: ignore[no-untyped-def]
    settings.STRIPE_SECRET_KEY = ""
    record = customer()
    seats(record, quantity=1)
    engine.payment_method_attach(customer=record, card=FAILS_ON_CHARGE)
    call_command("sandbox_advance", to="renewal", stdout=StringIO())
    renewal = SandboxInvoice.objects.get(billing_reason="subscription_cycle")
    assert (renewal.status, renewal.attempt_count) == ("open", 1)
    call_command("sandbox_advance", to="retry", stdout=StringIO())
    renewal.refresh_from_db()
    assert (renewal.status, renewal.attempt_count) == ("open", 2)


def test_sandbox_advance_says_when_nothing_is_scheduled(settings) -> None:  # type: ignore[no-untyped-def]
    settings.STRIPE_SECRET_KEY = ""
    with pytest.raises(CommandError, match="No renewal is scheduled"):
        call_command("sandbox_advance", to="renewal", stdout=StringIO())


REAL_POST = delivery.post  # captured at import, before the autouse fixture swaps it


@pytest.mark.django_db(transaction=True)
def test_events_travel_over_http_to_the_apps_own_endpoint(
    live_server,
    settings,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    settings.SITE_URL = live_server.url
    monkeypatch.setattr(delivery, "post", REAL_POST)
    record = customer(card=None)
    session = gateway.checkout_payment(
        customer_id=record.id,
        amount=5000,
        currency="usd",
        description="$50.00 of credits",
        metadata={},
        success_url=live_server.url + "/done",
        cancel_url=live_server.url + "/back",
        idempotency_key="http-1",
    )

    response = requests.post(session.url, data=card_form(), allow_redirects=False, timeout=10)
    # The hosted page is a real form: without its CSRF cookie it is refused, as a browser would be.
    assert response.status_code == 403
    browser = requests.Session()
    page = browser.get(session.url, timeout=10)
    token = page.text.split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
    response = browser.post(
        session.url,
        data={**card_form(), "csrfmiddlewaretoken": token},
        headers={"Referer": session.url},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302
    # Tasks ran inline after commit: every event was posted over HTTP, verified and processed.
    assert not SandboxEvent.objects.filter(delivered_at__isnull=True).exists()
    completed = WebhookEvent.objects.get(type="checkout.session.completed")
    assert completed.status == WebhookEvent.Status.PROCESSED
    assert SandboxEvent.objects.get(id=completed.event_id).last_response.startswith("200")


def test_a_paid_checkout_revisited_or_clicked_twice_goes_to_the_success_page(
    world, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """A complete session sends the buyer to the success URL, never to "expired": Stripe
    redirects to success_url once a payment succeeds
    (https://docs.stripe.com/payments/checkout/custom-success-page), and a complete session's
    status is `complete`, not `expired`
    (https://docs.stripe.com/api/checkout/sessions/object#checkout_session_object-status)."""

    record = customer(card=None)
    session = gateway.checkout_payment(
        customer_id=record.id,
        amount=2000,
        currency="usd",
        description="$20.00 of credits",
        metadata={},
        success_url="http://testserver/done?session={CHECKOUT_SESSION_ID}",
        cancel_url="http://testserver/back",
        idempotency_key="checkout-twice",
    )
    done = f"http://testserver/done?session={session.id}"
    # Two clicks on "Pay": the second request finds the session paid by the first.
    real = services.checkout_complete

    def paid_by_the_other_click(*, session_id: str, card: object) -> object:
        assert real(session_id=session_id, card=card).error is None  # type: ignore[arg-type]
        return real(session_id=session_id, card=card)  # type: ignore[arg-type]

    monkeypatch.setattr(services, "checkout_complete", paid_by_the_other_click)
    second = Client().post(session.url, card_form())
    assert second.status_code == 302
    assert second["Location"] == done
    # Revisited later: straight to the success page.
    revisit = Client().get(session.url)
    assert (revisit.status_code, revisit["Location"]) == (302, done)
    assert SandboxCheckoutSession.objects.get(pk=session.id).status == "complete"
    settle()
    assert WebhookEvent.objects.filter(type="checkout.session.completed").count() == 1
