"""32 deliveries at once of events about the same refund, dispute or delayed Checkout payment
(Stripe sends several events per change and redelivers any of them) move money once: each is
stored under its own id, posted to the real endpoint from its own thread and processed there, as
32 workers would, against the real PostgreSQL. Nothing answers 500."""

import json
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse

from credits.models import LedgerEntry, Purchase
from credits.services import account_for
from payments.models import WebhookEvent
from payments.sandbox import delivery, engine
from payments.sandbox.models import SandboxEvent, SandboxInvoice
from payments.signing import signature_header
from tests.conftest import World, client_for
from tests.payments.sandbox_helpers import GOOD

DOLLAR = 1_000_000
THREADS = 32


@pytest.fixture
def stripe_cannot_reach_us(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox's own deliveries fail, so that its events wait in its outbox for the test."""
    monkeypatch.setattr(delivery, "post", lambda url, body, headers: (503, "down"))


def outbox(*event_types: str) -> list[dict[str, Any]]:
    return [
        event.payload
        for event in SandboxEvent.objects.filter(type__in=event_types).order_by("delivery_order")
    ]


def in_parallel(payloads: list[dict[str, Any]]) -> list[int]:
    """Each payload under a new event id, all posted at once from THREADS threads."""
    copies = [
        {**payloads[i % len(payloads)], "id": f"{payloads[i % len(payloads)]['id']}_{i}"}
        for i in range(THREADS)
    ]
    bodies = [json.dumps(copy).encode() for copy in copies]
    barrier = threading.Barrier(THREADS)
    codes: list[int] = []

    def post(body: bytes) -> None:
        try:
            barrier.wait()
            response = Client().post(
                reverse("stripe_webhook"),
                data=body,
                content_type="application/json",
                headers={
                    "Stripe-Signature": signature_header(
                        body, secret=settings.STRIPE_WEBHOOK_SECRET
                    )
                },
            )
            codes.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return codes


def checkout_purchase(world: World, pay: Callable[[str], Any]) -> Purchase:
    response = client_for(world.owner).post(
        reverse("org_confirm", args=[world.org.pk]),
        {"amount_cents": 10_000, "key": str(uuid.uuid4())},
    )
    pay(response["Location"])
    return Purchase.objects.get()


def by_card(url: str) -> None:
    Client().post(url, {"number": GOOD.number, "expiry": "12 / 40", "cvc": "123"})


def by_bank(account_number: str) -> Callable[[str], None]:
    def pay(url: str) -> None:
        Client().post(
            url,
            {
                "method": "bank",
                "holder_name": "Acme",
                "routing_number": "110000000",
                "account_number": account_number,
                "mandate": "on",
            },
        )

    return pay


def ledger(world: World) -> list[tuple[str, int]]:
    return sorted(
        LedgerEntry.objects.filter(account=account_for(organization=world.org)).values_list(
            "kind", "amount"
        )
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("stripe_cannot_reach_us")
def test_a_refund_told_32_times_at_once_credits_and_refunds_once(world: World) -> None:
    purchase = checkout_purchase(world, by_card)
    invoice = SandboxInvoice.objects.get(metadata__purchase_id=str(purchase.pk))
    call_command("sandbox_refund", invoice=invoice.number, amount_usd="40")
    codes = in_parallel(outbox("charge.refunded", "refund.created"))
    assert sorted(set(codes)) == [200]
    assert WebhookEvent.objects.filter(status="processed").count() >= THREADS
    assert ledger(world) == [("purchase", 100 * DOLLAR), ("refund", -40 * DOLLAR)]
    assert account_for(organization=world.org).balance == 60 * DOLLAR
    assert len([m for m in mail.outbox if m.subject.startswith("Refund")]) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("stripe_cannot_reach_us")
def test_a_dispute_told_32_times_at_once_credits_and_takes_back_once(world: World) -> None:
    purchase = checkout_purchase(world, by_card)
    invoice = SandboxInvoice.objects.get(metadata__purchase_id=str(purchase.pk))
    call_command("sandbox_dispute", invoice=invoice.number)
    codes = in_parallel(outbox("charge.dispute.created", "charge.dispute.funds_withdrawn"))
    assert sorted(set(codes)) == [200]
    assert ledger(world) == [("dispute", -100 * DOLLAR), ("purchase", 100 * DOLLAR)]
    assert account_for(organization=world.org).balance == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("stripe_cannot_reach_us")
def test_a_bank_debit_settled_told_32_times_at_once_credits_once(world: World) -> None:
    checkout_purchase(world, by_bank("000123456789"))
    with time_machine.travel(engine.now() + timedelta(days=4, minutes=1), tick=False):
        engine.tick()
        codes = in_parallel(outbox("checkout.session.async_payment_succeeded", "invoice.paid"))
    assert sorted(set(codes)) == [200]
    assert Purchase.objects.get().status == "paid"
    assert ledger(world) == [("purchase", 100 * DOLLAR)]
    assert len([m for m in mail.outbox if m.subject.startswith("Receipt")]) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("stripe_cannot_reach_us")
def test_a_bank_debit_failed_told_32_times_at_once_ends_once(world: World) -> None:
    checkout_purchase(world, by_bank("000222222227"))
    with time_machine.travel(engine.now() + timedelta(days=4, minutes=1), tick=False):
        engine.tick()
        codes = in_parallel(
            outbox("checkout.session.async_payment_failed", "checkout.session.completed")
        )
    assert sorted(set(codes)) == [200]
    assert Purchase.objects.get().status == "failed"
    assert not LedgerEntry.objects.exists()
    assert len([m for m in mail.outbox if "failed" in m.subject]) == 1
