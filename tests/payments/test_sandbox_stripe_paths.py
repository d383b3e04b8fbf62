"""The sandbox's side of what real payments do: 3-D Secure, hard declines and their retries, the
saved card, refunds, disputes, pending updates that expire, the end of retries, the extra events
and their order. Each behaviour names the Stripe page it follows."""

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.urls import reverse

from payments.gateway import CardError, CustomerDetails, GatewayError
from payments.sandbox import engine
from payments.sandbox.gateway import SandboxGateway
from payments.sandbox.models import (
    SandboxCheckoutSession,
    SandboxEvent,
    SandboxInvoice,
    SandboxSubscription,
)
from tests.payments.sandbox_helpers import (
    AUTHENTICATION,
    EXPIRED_CARD,
    FAILS_ON_CHARGE,
    GENERIC_DECLINE,
    GOOD,
    LOST_CARD,
    customer,
    seats,
)

pytestmark = pytest.mark.django_db
gateway = SandboxGateway()
START = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
RENEWAL = START + timedelta(days=30, hours=1, seconds=1)


def types() -> list[str]:
    return list(
        SandboxEvent.objects.order_by("delivery_order", "created", "id").values_list(
            "type", flat=True
        )
    )


def card_form(card=GOOD) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"number": card.number, "expiry": "12 / 40", "cvc": card.cvc}


def charge(record: Any, amount: int = 5000, key: str = "c-1", **extra: Any) -> Any:
    return gateway.charge(
        customer_id=record.id,
        amount=amount,
        currency="usd",
        description="Credits",
        metadata={},
        idempotency_key=key,
        **extra,
    )


def checkout(record: Any, key: str = "co-1") -> Any:
    return gateway.checkout_payment(
        customer_id=record.id,
        amount=5000,
        currency="usd",
        description="$50.00 of credits",
        metadata={},
        success_url="http://testserver/done?session={CHECKOUT_SESSION_ID}",
        cancel_url="http://testserver/back",
        idempotency_key=key,
    )


# 3-D Secure: 4000 0027 6000 3184 "requires authentication on all transactions, regardless of
# how the card is set up" (https://docs.stripe.com/testing#authentication-and-setup).


def test_checkout_with_the_authentication_card_goes_through_the_banks_page() -> None:
    record = customer(card=None)
    session = checkout(record)
    answer = Client().post(session.url, card_form(AUTHENTICATION))
    assert "/sandbox/authenticate/pi_" in answer["Location"]
    assert "requires_action" in [
        e.payload["data"]["object"]["status"]
        for e in SandboxEvent.objects.filter(type="payment_intent.requires_action")
    ]
    page = Client().get(answer["Location"])
    assert page.status_code == 200
    assert "$50.00" in page.content.decode()
    done = Client().post(answer["Location"], {"outcome": "complete"})
    assert done["Location"] == f"http://testserver/done?session={session.id}"
    finished = gateway.checkout_session_retrieve(session_id=session.id)
    assert (finished.status, finished.payment_status) == ("complete", "paid")
    invoice = SandboxInvoice.objects.get()
    assert (invoice.status, invoice.amount_paid, invoice.attempt_count) == ("paid", 5000, 1)


def test_a_failed_authentication_leaves_checkout_open_for_another_try() -> None:
    record = customer(card=None)
    session = checkout(record)
    answer = Client().post(session.url, card_form(AUTHENTICATION))
    failed = Client().post(answer["Location"], {"outcome": "fail"})
    assert failed["Location"].endswith("?authentication=failed")
    page = Client().get(failed["Location"]).content.decode()
    assert "could not confirm the payment" in page
    assert gateway.checkout_session_retrieve(session_id=session.id).status == "open"
    error = (
        SandboxEvent.objects.filter(type="payment_intent.payment_failed")
        .order_by("delivery_order")
        .last()
    )
    assert error is not None
    assert error.payload["data"]["object"]["last_payment_error"]["code"] == (
        "payment_intent_authentication_failure"
    )
    assert not SandboxInvoice.objects.exists()
    # Nothing waits any more: the link is spent.
    assert Client().get(answer["Location"]).status_code == 410


def test_an_off_session_charge_on_the_card_waits_for_the_payer() -> None:
    # "If a payment fails or if it requires customer authentication ... the PaymentIntent status
    # is either requires_payment_method or requires_action", with invoice.payment_action_required
    # (https://docs.stripe.com/billing/subscriptions/overview).
    record = customer(AUTHENTICATION)
    SandboxEvent.objects.all().delete()
    result = charge(record, return_url="http://testserver/o/purchase/")
    assert not result.paid
    failure = result.failure
    assert failure is not None
    assert failure.needs_authentication
    assert not failure.hard
    assert "/sandbox/authenticate/" in failure.action_url
    assert "next=http%3A%2F%2Ftestserver%2Fo%2Fpurchase%2F" in failure.action_url
    invoice = SandboxInvoice.objects.get()
    assert (invoice.status, invoice.attempt_count, invoice.payment_intent_status) == (
        "open",
        1,
        "requires_action",
    )
    assert {"payment_intent.requires_action", "invoice.payment_action_required"} <= set(types())
    assert "charge.failed" not in types()
    attempt = gateway.invoice_last_payment(invoice_id=invoice.id)
    assert attempt is not None
    assert attempt.needs_authentication
    # The payer completes it: the same attempt is paid, no second attempt is counted.
    done = Client().post(failure.action_url, {"outcome": "complete"})
    assert done["Location"] == "http://testserver/o/purchase/"
    invoice.refresh_from_db()
    assert (invoice.status, invoice.attempt_count, invoice.amount_paid) == ("paid", 1, 5000)


def test_the_hosted_invoice_page_offers_the_authentication() -> None:
    record = customer(AUTHENTICATION)
    result = charge(record)
    page = Client().get(result.invoice.hosted_invoice_url).content.decode()
    assert "Your bank needs you to confirm this payment" in page
    assert "/sandbox/authenticate/" in page


def test_the_authentication_page_refuses_what_is_not_waiting_and_stays_on_site() -> None:
    record = customer(AUTHENTICATION)
    result = charge(record)
    assert result.failure is not None
    url = reverse("sandbox_authenticate", args=[SandboxInvoice.objects.get().payment_intent])
    assert Client().post(url, {"outcome": "maybe"}).status_code == 400
    off_site = Client().post(url + "?next=https://evil.example/steal", {"outcome": "complete"})
    assert off_site["Location"] == result.invoice.hosted_invoice_url
    assert Client().get(reverse("sandbox_authenticate", args=["pi_unknown"])).status_code == 410
    assert Client().post(url, {"outcome": "complete"}).status_code == 410  # paid already


def test_a_subscription_cannot_start_on_a_card_that_needs_authentication() -> None:
    # error_if_incomplete: "if a payment method requires 3DS authentication ... the subscription
    # creation fails with 402" (https://docs.stripe.com/api/subscriptions/create
    # #create_subscription-payment_behavior); nothing is left behind.
    record = customer(AUTHENTICATION)
    with pytest.raises(CardError) as caught:
        seats(record)
    assert caught.value.needs_authentication
    assert (caught.value.invoice_id, caught.value.action_url) == ("", "")
    assert not SandboxSubscription.objects.exists()


# Declines (https://docs.stripe.com/testing#declined-payments) and retries
# (https://docs.stripe.com/billing/revenue-recovery/smart-retries)


@pytest.mark.parametrize(
    ("card", "code", "decline_code"),
    [
        (LOST_CARD, "card_declined", "lost_card"),
        (EXPIRED_CARD, "expired_card", ""),
        (GENERIC_DECLINE, "card_declined", "generic_decline"),
    ],
)
def test_declining_cards_fail_at_checkout_and_attach_nothing(
    card: Any, code: str, decline_code: str
) -> None:
    # "You can't attach cards that simulate issuer declines to a Customer object."
    record = customer(card=None)
    session = checkout(record)
    page = Client().post(session.url, card_form(card))
    assert page.status_code == 200
    failed = SandboxEvent.objects.get(type="payment_intent.payment_failed")
    error = failed.payload["data"]["object"]["last_payment_error"]
    assert (error["code"], error["decline_code"] or "") == (code, decline_code)
    assert not record.payment_methods.exists()


def test_a_renewal_on_a_lost_card_is_retried_only_with_a_new_card() -> None:
    # "For these failures, the scheduled retries continue but the payment only executes if you
    # obtain a new payment method."
    with time_machine.travel(START, tick=False):
        record = customer()
        subscription = seats(record, quantity=2)
        engine.payment_method_attach(customer=record, card=LOST_CARD)  # the card page
    with time_machine.travel(RENEWAL, tick=False):
        engine.tick()
    invoice = SandboxInvoice.objects.get(billing_reason="subscription_cycle")
    assert (invoice.status, invoice.attempt_count, invoice.last_decline_code) == (
        "open",
        1,
        "lost_card",
    )
    assert invoice.next_payment_attempt is not None
    charges = Counter(types())["charge.failed"]
    with time_machine.travel(RENEWAL + timedelta(days=1, minutes=1), tick=False):
        engine.tick()
    invoice.refresh_from_db()
    assert invoice.attempt_count == 2  # the retry was counted but not made
    assert Counter(types())["charge.failed"] == charges
    engine.payment_method_attach(customer=record, card=GOOD)
    with time_machine.travel(RENEWAL + timedelta(days=3, minutes=1), tick=False):
        engine.tick()
    invoice.refresh_from_db()
    assert (invoice.status, invoice.attempt_count) == ("paid", 3)
    assert gateway.subscription_retrieve(subscription_id=subscription.id).status == "active"


def test_an_expired_card_is_retried_as_stripe_does() -> None:
    # expired_card is not on Stripe's non-retryable list: the retries are made (and fail).
    with time_machine.travel(START, tick=False):
        record = customer()
        seats(record, quantity=1)
        engine.payment_method_attach(customer=record, card=EXPIRED_CARD)
    with time_machine.travel(RENEWAL, tick=False):
        engine.tick()
    with time_machine.travel(RENEWAL + timedelta(days=1, minutes=1), tick=False):
        engine.tick()
    invoice = SandboxInvoice.objects.get(billing_reason="subscription_cycle")
    assert (invoice.attempt_count, invoice.last_error_code) == (2, "expired_card")
    assert Counter(types())["charge.failed"] == 2


def test_without_a_card_there_is_no_retry() -> None:
    # Stripe does not retry when "no payment methods are available".
    with time_machine.travel(START, tick=False):
        record = customer()
        seats(record, quantity=1)
        record.default_payment_method = None
        record.save()
    with time_machine.travel(RENEWAL, tick=False):
        engine.tick()
    invoice = SandboxInvoice.objects.get(billing_reason="subscription_cycle")
    assert (invoice.attempt_count, invoice.last_error_code) == (1, "payment_method_missing")
    assert invoice.next_payment_attempt is None
    attempt = gateway.invoice_last_payment(invoice_id=invoice.id)
    assert attempt is not None
    assert attempt.hard


@pytest.mark.parametrize(("setting", "status"), [("unpaid", "unpaid"), ("cancel", "canceled")])
def test_the_end_of_retries_follows_the_dashboard_setting(
    settings: Any, setting: str, status: str
) -> None:
    # "Cancel the subscription" or "mark the subscription as unpaid" after the final retry
    # (https://docs.stripe.com/billing/subscriptions/overview#settings).
    settings.SANDBOX_END_OF_RETRIES = setting
    with time_machine.travel(START, tick=False):
        record = customer()
        subscription = seats(record, quantity=1)
        engine.payment_method_attach(customer=record, card=FAILS_ON_CHARGE)
    for days in (0, 1, 3, 5):
        with time_machine.travel(RENEWAL + timedelta(days=days, minutes=1), tick=False):
            engine.tick()
    assert gateway.subscription_retrieve(subscription_id=subscription.id).status == status
    assert ("customer.subscription.deleted" in types()) == (setting == "cancel")


# The saved card: "Checkout will attach the payment method to the Customer" and, in subscription
# mode, set it "as the default_payment_method on the Subscription" (Stripe, Checkout sessions).


def test_checkout_saves_the_card_on_the_subscription_not_the_customer() -> None:
    record = customer(card=None)
    price = gateway.price_ensure(lookup_key="k", product_name="Teams seat", unit_amount=1800)
    session = gateway.checkout_subscription(
        customer_id=record.id,
        price_id=price.id,
        quantity=2,
        metadata={},
        success_url="http://testserver/done",
        cancel_url="http://testserver/back",
        idempotency_key="cs-sub",
    )
    Client().post(session.url, card_form(GOOD))
    subscription = SandboxSubscription.objects.get()
    assert subscription.default_payment_method is not None
    assert gateway.payment_method_default(customer_id=record.id) is None
    gateway.checkout_session_save_card(session_id=session.id)
    subscription.refresh_from_db()
    assert subscription.default_payment_method is None
    default = gateway.payment_method_default(customer_id=record.id)
    assert default is not None
    assert default.last4 == "4242"


def test_an_attached_card_that_is_not_the_default_is_not_charged() -> None:
    record = customer(card=None)
    engine.payment_method_attach(customer=record, card=GOOD, make_default=False)
    result = charge(record)
    assert result.failure is not None
    assert result.failure.code == "payment_method_missing"


# Refunds (https://docs.stripe.com/api/refunds/create) and charge.refunded: the charge with its
# cumulative amount_refunded and no refunds list since 2022-11-15
# (https://docs.stripe.com/changelog/2022-11-15/deprecates-charges-auto-expand).


def test_refunds_partial_then_the_rest_and_never_more() -> None:
    record = customer()
    paid = charge(record, amount=10000)
    invoice = SandboxInvoice.objects.get(pk=paid.invoice.id)
    SandboxEvent.objects.all().delete()
    first = gateway.refund_create(
        invoice_id=invoice.id,
        amount=2500,
        reason="requested_by_customer",
        metadata={"purchase_id": "7"},
        idempotency_key="r-1",
    )
    again = gateway.refund_create(
        invoice_id=invoice.id,
        amount=2500,
        reason="requested_by_customer",
        metadata={"purchase_id": "7"},
        idempotency_key="r-1",
    )
    assert again == first
    assert types() == ["charge.refunded", "refund.created"]
    refunded = SandboxEvent.objects.get(type="charge.refunded").payload["data"]["object"]
    assert (refunded["amount"], refunded["amount_refunded"], refunded["refunded"]) == (
        10000,
        2500,
        False,
    )
    assert "refunds" not in refunded
    assert refunded["payment_intent"] == invoice.payment_intent
    rest = gateway.refund_create(
        invoice_id=invoice.id, amount=7500, reason="", metadata={}, idempotency_key="r-2"
    )
    assert (rest.amount, rest.status, rest.payment_intent) == (
        7500,
        "succeeded",
        invoice.payment_intent,
    )
    listed = gateway.refund_list(payment_intent=invoice.payment_intent)
    assert sorted((r.id, r.amount) for r in listed) == sorted([(first.id, 2500), (rest.id, 7500)])
    last = SandboxEvent.objects.filter(type="charge.refunded").order_by("delivery_order").last()
    assert last is not None
    assert last.payload["data"]["object"]["refunded"] is True
    with pytest.raises(GatewayError, match="already been refunded"):
        gateway.refund_create(
            invoice_id=invoice.id, amount=1, reason="", metadata={}, idempotency_key="r-3"
        )
    invoice.refresh_from_db()
    assert invoice.status == "paid"  # Stripe has no refunded invoice state
    assert gateway.payment_invoice_id(payment_intent=invoice.payment_intent) == invoice.id


def test_a_refund_larger_than_what_is_left_or_of_an_unpaid_invoice_is_refused() -> None:
    record = customer()
    paid = charge(record, amount=1000)
    with pytest.raises(GatewayError, match="greater than unrefunded amount"):
        gateway.refund_create(
            invoice_id=paid.invoice.id, amount=1001, reason="", metadata={}, idempotency_key="a"
        )
    failing = customer(FAILS_ON_CHARGE, name="Globex")
    unpaid = charge(failing, key="c-2")
    with pytest.raises(GatewayError, match="no payment to refund"):
        gateway.refund_create(
            invoice_id=unpaid.invoice.id, amount=1, reason="", metadata={}, idempotency_key="b"
        )
    with pytest.raises(GatewayError, match="Invalid reason"):
        gateway.refund_create(
            invoice_id=paid.invoice.id, amount=1, reason="because", metadata={}, idempotency_key="c"
        )


@pytest.mark.parametrize(
    "amount", ["1e309", "-5", "0", "1.005", "10000000000000", "\x00", "x" * 10_000]
)
def test_sandbox_refund_refuses_absurd_amounts(amount: str, settings: Any) -> None:
    settings.STRIPE_SECRET_KEY = ""
    record = customer()
    paid = charge(record, amount=1000)
    with pytest.raises(CommandError):
        call_command("sandbox_refund", invoice=paid.invoice.number, amount_usd=amount)
    assert not SandboxEvent.objects.filter(type="charge.refunded").exists()


def test_sandbox_refund_and_dispute_name_an_unknown_invoice(settings: Any) -> None:
    settings.STRIPE_SECRET_KEY = ""
    with pytest.raises(CommandError, match="No sandbox invoice"):
        call_command("sandbox_refund", invoice="KB-999999")
    with pytest.raises(CommandError, match="No sandbox invoice"):
        call_command("sandbox_dispute", invoice="KB-999999")


# Disputes (https://docs.stripe.com/disputes/how-disputes-work): created with the funds
# withdrawn, closed won (funds reinstated) or lost; one dispute per charge.


def test_a_dispute_withdraws_then_closes_won_or_lost(settings: Any, capsys: Any) -> None:
    settings.STRIPE_SECRET_KEY = ""
    record = customer()
    won = charge(record, amount=5000, key="w")
    lost = charge(record, amount=3000, key="l")
    SandboxEvent.objects.all().delete()
    call_command("sandbox_dispute", invoice=won.invoice.number)
    assert types() == [
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
        "charge.updated",
    ]
    created = SandboxEvent.objects.get(type="charge.dispute.created").payload["data"]["object"]
    assert (created["status"], created["amount"], created["reason"]) == (
        "needs_response",
        5000,
        "fraudulent",
    )
    with pytest.raises(CommandError, match="already disputed"):
        call_command("sandbox_dispute", invoice=won.invoice.number)
    with pytest.raises(CommandError, match="charged back"):
        call_command("sandbox_refund", invoice=won.invoice.number)
    call_command("sandbox_dispute", invoice=won.invoice.number, close="won")
    assert types()[-2:] == ["charge.dispute.closed", "charge.dispute.funds_reinstated"]
    with pytest.raises(CommandError, match="already closed"):
        call_command("sandbox_dispute", invoice=won.invoice.number, close="lost")
    call_command("sandbox_dispute", invoice=lost.invoice.number)
    call_command("sandbox_dispute", invoice=lost.invoice.number, close="lost")
    assert types()[-1] == "charge.dispute.closed"
    assert "closed: lost" in capsys.readouterr().out
    with pytest.raises(CommandError, match="has no dispute"):
        call_command("sandbox_dispute", invoice=charge(record, key="n").invoice.number, close="won")


# Pending updates: "the invoice is voided and the pending update is discarded after the
# expired_at time" (https://docs.stripe.com/billing/subscriptions/pending-updates-reference).


def test_an_expired_pending_update_is_voided_by_the_gateway_itself() -> None:
    with time_machine.travel(START, tick=False):
        record = customer()
        subscription = seats(record, quantity=5)
        engine.payment_method_attach(customer=record, card=FAILS_ON_CHARGE)
        with pytest.raises(CardError):
            gateway.subscription_change_quantity(
                subscription_id=subscription.id,
                quantity=7,
                proration_date=None,
                idempotency_key="add-2",
            )
    SandboxEvent.objects.all().delete()
    with time_machine.travel(START + timedelta(hours=23, minutes=1), tick=False):
        engine.tick()
    assert types() == [
        "customer.subscription.pending_update_expired",
        "invoice.voided",
        "invoice.updated",
    ]
    expired = SandboxEvent.objects.get(type="customer.subscription.pending_update_expired")
    assert expired.payload["data"]["object"]["pending_update"] is None
    assert expired.payload["data"]["object"]["items"]["data"][0]["quantity"] == 5
    # Voiding it again is what was asked: no error.
    invoice = SandboxInvoice.objects.get(billing_reason="subscription_update")
    assert gateway.invoice_void(invoice_id=invoice.id).status == "void"


def test_an_applied_pending_update_says_so() -> None:
    record = customer()
    subscription = seats(record, quantity=2)
    SandboxEvent.objects.all().delete()
    gateway.subscription_change_quantity(
        subscription_id=subscription.id, quantity=3, proration_date=None, idempotency_key="add"
    )
    assert "customer.subscription.pending_update_applied" in types()


# Order: Stripe sends one action's events in no guaranteed order
# (https://docs.stripe.com/webhooks#event-ordering).


def test_shuffling_changes_the_order_of_an_actions_events_not_the_set(settings: Any) -> None:
    record = customer()
    SandboxEvent.objects.all().delete()
    charge(record, key="in-order")
    in_order = types()
    SandboxEvent.objects.all().delete()
    settings.SANDBOX_SHUFFLE_EVENTS = True
    orders = set()
    for n in range(5):
        SandboxEvent.objects.all().delete()
        charge(record, key=f"shuffled-{n}")
        shuffled = types()
        assert Counter(shuffled) == Counter(in_order)
        orders.add(tuple(shuffled))
    assert len(orders) > 1


def test_a_tax_id_of_the_wrong_shape_is_refused_like_stripe() -> None:
    record = customer(card=None)
    with pytest.raises(GatewayError, match="invalid_request_error"):
        gateway.customer_update(
            customer_id=record.id,
            details=CustomerDetails(
                name="Acme", email="a@acme.test", tax_id="GB12", tax_id_type="gb_vat"
            ),
        )
    gateway.customer_update(
        customer_id=record.id,
        details=CustomerDetails(
            name="Acme", email="a@acme.test", tax_id="GB123456789", tax_id_type="gb_vat"
        ),
    )
    record.refresh_from_db()
    assert record.tax_ids[0]["type"] == "gb_vat"


def test_every_checkout_session_used_for_authentication_is_one_session() -> None:
    record = customer(card=None)
    session = checkout(record)
    for _ in range(2):
        answer = Client().post(session.url, card_form(AUTHENTICATION))
        assert "/sandbox/authenticate/" in answer["Location"]
    assert SandboxCheckoutSession.objects.get().payment_intent in answer["Location"]


@pytest.mark.parametrize("payment_id", ["pi_%00x", "x" * 5000, "pi_1Kb' OR 1=1 --"])
def test_the_authentication_page_answers_absurd_ids_without_a_500(payment_id: str) -> None:
    assert Client().get(f"/sandbox/authenticate/{payment_id}/").status_code in (404, 410)
    assert Client().post(
        f"/sandbox/authenticate/{payment_id}/", {"outcome": "complete"}
    ).status_code in (
        404,
        410,
    )


@pytest.mark.django_db(transaction=True)
def test_32_answers_to_one_authentication_pay_once() -> None:

    record = customer(AUTHENTICATION)
    result = charge(record)
    assert result.failure is not None
    url = result.failure.action_url
    barrier = threading.Barrier(32)
    codes: list[int] = []

    def answer() -> None:
        try:
            barrier.wait()
            codes.append(Client().post(url, {"outcome": "complete"}).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=answer) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 500 not in codes
    assert codes.count(302) >= 1
    invoice = SandboxInvoice.objects.get()
    assert (invoice.status, invoice.attempt_count) == ("paid", 1)
    assert SandboxEvent.objects.filter(type="invoice.paid").count() == 1
