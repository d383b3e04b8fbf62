"""Seats with real payments: an addition that needs 3-D Secure, pending updates that expire, the
card a seat Checkout collected becoming the default, a first purchase on a card that needs
authentication, and the bounded wait for another seat change."""

import re
import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.test import Client
from django.urls import reverse

from billing.services import billing_profile_for
from organizations.models import AuditEvent
from payments.factory import get_gateway
from payments.sandbox import engine, objects
from payments.sandbox import services as sandbox_services
from payments.sandbox.models import SandboxInvoice, SandboxSubscription
from seats import selectors, services
from seats.exceptions import AuthenticationRequired, PaymentFailed, SeatChangeBusy
from seats.models import SeatChange, SeatSubscription
from tests.conftest import World, client_for, settle
from tests.payments.sandbox_helpers import AUTHENTICATION, FAILS_ON_CHARGE, GOOD
from tests.seats.conftest import START, buy, save_card, terms_of
from tests.seats.test_add import add

pytestmark = pytest.mark.django_db


def post_addition(world: World, seats: int) -> Any:
    preview = selectors.seat_addition_preview(organization=world.org, seats=seats)
    return client_for(world.owner).post(
        reverse("org_seats_add", args=[world.org.pk]),
        {
            "seats": seats,
            "key": str(uuid.uuid4()),
            "proration_date": int(preview.proration_date.timestamp()),
            "period_end": int(preview.period_end.timestamp()),
            "unit_amount": preview.unit_amount,
        },
    )


def test_an_addition_that_needs_authentication_completes_when_the_payer_confirms(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    # pending_if_incomplete: "the changes are applied" once the customer authenticates
    # (https://docs.stripe.com/billing/subscriptions/pending-updates).
    with time_machine.travel(START, tick=False):
        buy(world.org, world.owner, seats=5)
        save_card(world.org, AUTHENTICATION)
    with time_machine.travel(START + timedelta(days=10), tick=False):
        response = post_addition(world, 3)
        bank = response["Location"]
        assert "/sandbox/authenticate/" in bank
        change = SeatChange.objects.get(kind="add")
        assert (change.status, change.action_url) == ("pending", bank)
        assert SeatSubscription.objects.get(organization=world.org).quantity == 5
        mail.outbox.clear()
        Client().post(bank, {"outcome": "complete"})
        with django_capture_on_commit_callbacks(execute=True):
            settle()
    subscription = SeatSubscription.objects.get(organization=world.org)
    assert (subscription.quantity, subscription.pending_quantity) == (8, None)
    change.refresh_from_db()
    assert (change.status, change.amount) == ("succeeded", 3600)
    assert len([m for m in mail.outbox if "Seats added" in m.subject]) == 1
    # The same confirmation again returns the change, charges nothing more.
    assert SandboxInvoice.objects.filter(billing_reason="subscription_update").count() == 1


def test_a_second_submit_of_an_addition_waiting_for_the_bank_goes_back_to_it(
    world: World,
) -> None:
    buy(world.org, world.owner, seats=5)
    save_card(world.org, AUTHENTICATION)
    preview = selectors.seat_addition_preview(organization=world.org, seats=1)
    key = str(uuid.uuid4())
    for _ in range(2):
        with pytest.raises(AuthenticationRequired) as waiting:
            services.seats_add(
                actor=world.owner,
                organization=world.org,
                seats=1,
                idempotency_key=key,
                terms=terms_of(preview),
            )
        assert "/sandbox/authenticate/" in waiting.value.action_url
    assert SandboxInvoice.objects.filter(billing_reason="subscription_update").count() == 1


def test_an_addition_not_paid_in_time_expires_and_the_owner_is_told(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    # "the invoice is voided and the pending update is discarded after the expired_at time"
    # (https://docs.stripe.com/billing/subscriptions/pending-updates-reference).
    with time_machine.travel(START, tick=False):
        buy(world.org, world.owner, seats=5)
        save_card(world.org, FAILS_ON_CHARGE)
        with pytest.raises(PaymentFailed):
            add(world, 2)
        settle()
    mail.outbox.clear()
    with time_machine.travel(START + timedelta(hours=23, minutes=1), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            engine.tick()
        with django_capture_on_commit_callbacks(execute=True):
            settle()
    change = SeatChange.objects.get(kind="add")
    assert change.status == "expired"
    assert "voided" in change.failure_message
    invoice = SandboxInvoice.objects.get(billing_reason="subscription_update")
    assert invoice.status == "void"
    told = [m for m in mail.outbox if m.subject.startswith("Seats not added")]
    assert len(told) == 1
    assert world.owner.email in told[0].to
    assert invoice.number in told[0].body
    assert AuditEvent.objects.filter(action="seats.add_expired").count() == 1
    subscription = SeatSubscription.objects.get(organization=world.org)
    assert (subscription.quantity, subscription.pending_quantity) == (5, None)


def test_the_product_voids_the_invoice_if_the_gateway_has_not_yet(world: World) -> None:
    # The product tolerates both: an invoice Stripe voided, and one still open when the event
    # arrives (the pending update expired, the invoice's own event not yet processed).
    with time_machine.travel(START, tick=False):
        buy(world.org, world.owner, seats=5)
        save_card(world.org, FAILS_ON_CHARGE)
        with pytest.raises(PaymentFailed):
            add(world, 2)
        settle()
    subscription = SandboxSubscription.objects.get()
    subscription.pending_quantity = subscription.pending_expires_at = None
    subscription.pending_invoice = None
    subscription.save()
    with engine.action():
        engine.emit(
            "customer.subscription.pending_update_expired", objects.subscription_json(subscription)
        )
    settle()
    assert SandboxInvoice.objects.get(billing_reason="subscription_update").status == "void"
    assert SeatChange.objects.get(kind="add").status == "expired"


def test_a_seat_checkout_makes_its_card_the_default(world: World) -> None:
    response = client_for(world.owner).post(
        reverse("org_seats_buy", args=[world.org.pk]),
        {"plan": "teams", "seats": 4, "key": str(uuid.uuid4())},
    )
    session_id = re.search(r"/(cs_test_\w+)", response["Location"]).group(1)  # type: ignore[union-attr]
    assert sandbox_services.checkout_complete(session_id=session_id, card=GOOD).error is None
    customer_id = billing_profile_for(organization=world.org).gateway_customer_id
    assert get_gateway().payment_method_default(customer_id=customer_id) is None
    settle()  # checkout.session.completed
    card = get_gateway().payment_method_default(customer_id=customer_id)
    assert card is not None
    assert card.last4 == "4242"
    assert SandboxSubscription.objects.get().default_payment_method is None
    # Additions are then charged off-session with it, without another Checkout.
    assert add(world, 1).status == "succeeded"


def test_coming_back_from_a_seat_checkout_saves_the_card_before_the_webhook(world: World) -> None:
    response = client_for(world.owner).post(
        reverse("org_seats_buy", args=[world.org.pk]),
        {"plan": "teams", "seats": 4, "key": str(uuid.uuid4())},
    )
    session_id = re.search(r"/(cs_test_\w+)", response["Location"]).group(1)  # type: ignore[union-attr]
    sandbox_services.checkout_complete(session_id=session_id, card=GOOD)
    client_for(world.owner).get(reverse("org_seats", args=[world.org.pk]), {"session": session_id})
    customer_id = billing_profile_for(organization=world.org).gateway_customer_id
    assert get_gateway().payment_method_default(customer_id=customer_id) is not None


def test_a_first_purchase_on_a_card_that_needs_authentication_goes_to_checkout(
    world: World,
) -> None:
    save_card(world.org, AUTHENTICATION)
    response = client_for(world.owner).post(
        reverse("org_seats_buy", args=[world.org.pk]),
        {"plan": "teams", "seats": 4, "key": str(uuid.uuid4())},
    )
    checkout = response["Location"]
    assert "/sandbox/checkout/" in checkout
    bank = Client().post(
        checkout, {"number": AUTHENTICATION.number, "expiry": "12 / 40", "cvc": "123"}
    )
    Client().post(bank["Location"], {"outcome": "complete"})
    settle()
    subscription = SeatSubscription.objects.get(organization=world.org)
    assert (subscription.status, subscription.quantity) == ("active", 4)
    assert SeatChange.objects.get(kind="purchase").status == "succeeded"


@pytest.mark.django_db(transaction=True)
def test_a_seat_change_waits_for_another_only_so_long(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The other change holds the lock across its gateway call (a minute at most with Stripe's
    # timeouts); this one gives up after SEAT_CHANGE_LOCK_WAIT with a clear message.
    buy(world.org, world.owner, seats=5)
    monkeypatch.setattr(services, "SEAT_CHANGE_LOCK_WAIT", timedelta(milliseconds=300))
    holding = threading.Event()
    release = threading.Event()

    def hold() -> None:
        try:
            with services._seat_change_lock(world.org.pk):
                holding.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        with pytest.raises(SeatChangeBusy, match="try again in a minute"):
            add(world, 1)
        page = post_addition(world, 1)
        assert page.status_code == 400
        assert "try again in a minute" in page.content.decode()
    finally:
        release.set()
        holder.join()
    assert add(world, 1).status == "succeeded"
