"""Deliver the sandbox's events the way Stripe may: reversed, each twice, a day late."""

import json
from typing import Any

from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from payments import dispatch
from payments.models import WebhookEvent
from payments.sandbox.models import SandboxEvent
from payments.signing import signature_header


def take_events() -> list[dict[str, Any]]:
    """Every event the sandbox has not delivered yet, in the order it would send them, taken out
    of its outbox so that the test decides the order."""
    pending = SandboxEvent.objects.filter(delivered_at__isnull=True).order_by(
        "delivery_order", "created", "id"
    )
    payloads = [event.payload for event in pending]
    pending.update(delivered_at=timezone.now(), next_attempt_at=None)
    return payloads


def post_event(payload: dict[str, Any]) -> int:
    body = json.dumps(payload).encode()
    return (
        Client()
        .post(
            reverse("stripe_webhook"),
            data=body,
            content_type="application/json",
            headers={
                "Stripe-Signature": signature_header(body, secret=settings.STRIPE_WEBHOOK_SECRET)
            },
        )
        .status_code
    )


def deliver_badly(payloads: list[dict[str, Any]]) -> None:
    """Newest first, each twice (the second delivery of each after all the firsts), processed
    as the worker would; the caller moves the clock (a day late) before."""
    for payload in [*reversed(payloads), *reversed(payloads)]:
        assert post_event(payload) == 200
        for event in WebhookEvent.objects.filter(status="pending").order_by("pk"):
            dispatch.webhook_event_process(webhook_event_id=event.pk)
    assert not WebhookEvent.objects.filter(status="failed").exists(), list(
        WebhookEvent.objects.filter(status="failed").values_list("type", "last_error")
    )
