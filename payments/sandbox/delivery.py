"""Sending the sandbox's events to the app's own webhook endpoint over HTTP, as Stripe does:
signed, one event per request, again with backoff until a 2xx, for up to three days."""

import json
import logging
from datetime import timedelta

import requests
from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from payments.sandbox.models import SandboxEvent
from payments.signing import signature_header

logger = logging.getLogger(__name__)

GIVE_UP_AFTER = timedelta(days=3)


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    """One HTTP request; tests swap this for the Django test client."""
    response = requests.post(url, data=body, headers=headers, timeout=10)
    return response.status_code, response.text[:300]


def _backoff(attempts: int) -> timedelta:
    return min(timedelta(minutes=1) * 2 ** max(attempts - 1, 0), timedelta(hours=6))


def sandbox_event_deliver(*, event_id: str) -> bool:
    """Deliver once if still undelivered; True when the endpoint has it."""
    with transaction.atomic():
        event = (
            SandboxEvent.objects.select_for_update(skip_locked=True)
            .filter(pk=event_id, delivered_at__isnull=True, next_attempt_at__isnull=False)
            .first()
        )
        if event is None:
            return SandboxEvent.objects.filter(pk=event_id, delivered_at__isnull=False).exists()
        body = json.dumps(event.payload, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": signature_header(body, secret=settings.STRIPE_WEBHOOK_SECRET),
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks) KiloSandbox",
        }
        try:
            status, text = post(settings.SITE_URL + reverse("stripe_webhook"), body, headers)
        except requests.RequestException as error:
            status, text = 0, str(error)[:300]
        event.attempts += 1
        event.last_response = f"{status} {text}"[:300]
        now = timezone.now()
        if 200 <= status < 300:
            event.delivered_at = now
        elif now - event.created > GIVE_UP_AFTER:
            event.next_attempt_at = None
            logger.error("sandbox event %s undeliverable: %s", event.id, event.last_response)
        else:
            event.next_attempt_at = now + _backoff(event.attempts)
        event.save(update_fields=["attempts", "last_response", "delivered_at", "next_attempt_at"])
        return event.delivered_at is not None


def undelivered_event_ids(*, limit: int = 500) -> list[str]:
    return list(
        SandboxEvent.objects.filter(delivered_at__isnull=True, next_attempt_at__lte=timezone.now())
        .order_by("delivery_order", "created", "id")
        .values_list("id", flat=True)[:limit]
    )


def sandbox_events_redeliver() -> int:
    return sum(sandbox_event_deliver(event_id=event_id) for event_id in undelivered_event_ids())
