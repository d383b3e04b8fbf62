"""The gateway's events keep the local subscription in step, delivered twice and in any order:
each handler re-fetches the subscription, so an old event never brings back an old state."""

import json
import re
import uuid
from datetime import timedelta

import time_machine
from django.conf import settings
from django.test import Client
from django.urls import reverse

from organizations.models import AuditEvent
from payments import dispatch
from payments.factory import get_gateway
from payments.models import WebhookEvent
from payments.sandbox import delivery, engine
from payments.sandbox import services as sandbox_services
from payments.sandbox.models import SandboxEvent
from payments.signing import signature_header
from seats.models import SeatChange, SeatReceipt, SeatSubscription
from tests.conftest import World, client_for, settle
from tests.payments.sandbox_helpers import GOOD, customer, seats
from tests.seats.conftest import buy, save_card
from tests.seats.test_add import add


def post_event(payload: dict[str, object], event_id: str | None = None) -> None:
    payload = {**payload, "id": event_id or payload["id"]}
    body = json.dumps(payload).encode()
    response = Client().post(
        reverse("stripe_webhook"),
        data=body,
        content_type="application/json",
        headers={"Stripe-Signature": signature_header(body, secret=settings.STRIPE_WEBHOOK_SECRET)},
    )
    assert response.status_code == 200
    for event in WebhookEvent.objects.filter(status=WebhookEvent.Status.PENDING):
        dispatch.webhook_event_process(webhook_event_id=event.pk)


def test_a_checkout_purchase_arrives_in_reverse_order_and_twice(world: World) -> None:
    response = client_for(world.owner).post(
        reverse("org_seats_buy", args=[world.org.pk]),
        {"plan": "teams", "seats": 4, "key": str(uuid.uuid4())},
    )
    session_id = re.search(r"/(cs_test_\w+)", response["Location"]).group(1)  # type: ignore[union-attr]
    assert sandbox_services.checkout_complete(session_id=session_id, card=GOOD).error is None
    events = list(SandboxEvent.objects.order_by("-created", "-id"))
    assert {"customer.subscription.created", "invoice.paid", "checkout.session.completed"} <= {
        event.type for event in events
    }
    for event in events:  # newest first
        delivery.sandbox_event_deliver(event_id=event.id)
    settle()
    for event in events:  # and every one again
        post_event(event.payload)
    subscription = SeatSubscription.objects.get(organization=world.org)
    assert (subscription.status, subscription.quantity, subscription.seats) == ("active", 4, 4)
    assert SeatReceipt.objects.count() == 1
    assert SeatChange.objects.get().status == "succeeded"
    assert AuditEvent.objects.filter(action="seats.purchase").count() == 1
    # Every event handled; those the product does not subscribe to (Stripe sends them all the
    # same, e.g. charge.succeeded) stored and ignored.
    assert not WebhookEvent.objects.exclude(
        status__in=[WebhookEvent.Status.PROCESSED, WebhookEvent.Status.IGNORED]
    ).exists()


def test_a_late_old_event_does_not_bring_back_an_old_quantity(world: World) -> None:
    buy(world.org, world.owner, seats=5)
    first = SandboxEvent.objects.filter(type="customer.subscription.created").get()
    add(world, 3)
    settle()
    assert SeatSubscription.objects.get(organization=world.org).quantity == 8
    # Stripe may send an old state late (here under a new event id): it changes nothing.
    post_event(first.payload, event_id="evt_late_created")
    assert first.payload["data"]["object"]["items"]["data"][0]["quantity"] == 5  # type: ignore[index]
    subscription = SeatSubscription.objects.get(organization=world.org)
    assert (subscription.quantity, subscription.status) == (8, "active")


def test_subscriptions_that_are_not_seats_are_ignored(world: World) -> None:
    record = customer()
    seats(record, quantity=2)  # metadata without purpose=seats
    settle()
    assert not SeatSubscription.objects.exists()
    assert not WebhookEvent.objects.filter(status=WebhookEvent.Status.FAILED).exists()


def test_a_change_made_at_the_gateway_is_mirrored(world: World) -> None:

    buy(world.org, world.owner, seats=5)
    subscription = SeatSubscription.objects.get(organization=world.org)
    get_gateway().subscription_change_quantity(
        subscription_id=subscription.gateway_subscription_id,
        quantity=4,
        proration_date=None,
        idempotency_key="from-the-dashboard",
    )
    settle()
    subscription.refresh_from_db()
    assert subscription.quantity == 4


def test_an_expired_checkout_fails_its_purchase(world: World) -> None:

    client_for(world.owner).post(
        reverse("org_seats_buy", args=[world.org.pk]),
        {"plan": "teams", "seats": 4, "key": str(uuid.uuid4())},
    )
    with time_machine.travel(engine.now() + timedelta(hours=25), tick=False):
        engine.tick()
        settle()
    change = SeatChange.objects.get()
    assert change.status == "failed"
    assert "expired" in change.failure_message
    save_card(world.org)  # and a new purchase works
    buy(world.org, world.owner, seats=4, card=None)
