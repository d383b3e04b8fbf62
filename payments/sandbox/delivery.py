"""Sending the sandbox's events to the app's own webhook endpoint over HTTP, as Stripe does:
signed, one event per request, again with backoff until a 2xx, for up to three days. Times are
the sandbox's clock, so that moving it (`sandbox_advance`) moves deliveries due later too.

With SANDBOX_DELIVERY=chaos each event follows its plan (payments.sandbox.chaos): delivered late,
in any order, some twice, some lost on the way and redelivered later."""

import json
import logging
from datetime import datetime, timedelta

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.urls import reverse

from payments.sandbox import chaos, engine
from payments.sandbox.models import SandboxEvent
from payments.signing import signature_header

logger = logging.getLogger(__name__)

GIVE_UP_AFTER = timedelta(days=3)
# A delivery in progress keeps others from sending the same attempt for this long (the request
# times out after 10 s); if its process dies, the event is due again after it.
IN_FLIGHT = timedelta(minutes=1)


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    """One HTTP request; tests swap this for the Django test client."""
    response = requests.post(url, data=body, headers=headers, timeout=10)
    return response.status_code, response.text[:300]


def _backoff(attempts: int) -> timedelta:
    return min(timedelta(minutes=1) * 2 ** max(attempts - 1, 0), timedelta(hours=6))


def _claim(event_id: str, *, now: datetime, early: bool) -> SandboxEvent | None:
    """Take the event's next attempt with one conditional UPDATE (no row lock is held while the
    request is on its way): owed and due (or any owed one, `early`)."""
    owed = SandboxEvent.objects.filter(pk=event_id, next_attempt_at__isnull=False)
    if not early:
        owed = owed.filter(next_attempt_at__lte=now)
    with transaction.atomic():
        if not owed.update(next_attempt_at=now + IN_FLIGHT, attempts=F("attempts") + 1):
            return None
        return SandboxEvent.objects.get(pk=event_id)


def _record(event: SandboxEvent, **fields: object) -> None:
    """The attempt's outcome, unless another process took the event over meanwhile."""
    SandboxEvent.objects.filter(
        pk=event.pk, attempts=event.attempts, next_attempt_at=event.next_attempt_at
    ).update(**fields)


def sandbox_event_deliver(*, event_id: str, early: bool | None = None) -> bool:
    """Make the event's next attempt; True when the endpoint has had it (now or before). Asked
    for one event (its task, right after the action), it goes at once, as it always did; with
    chaotic delivery only when its plan says it is due (`early` decides either way)."""
    now = engine.now()
    if early is None:
        early = settings.SANDBOX_DELIVERY != "chaos"
    event = _claim(event_id, now=now, early=early)
    if event is None:
        return SandboxEvent.objects.filter(pk=event_id, delivered_at__isnull=False).exists()
    if event.drops:
        # Lost on the way (chaos): Stripe sees no answer and tries again later.
        _record(
            event,
            drops=event.drops - 1,
            last_response="lost on the way (chaotic delivery)",
            next_attempt_at=now + chaos.later(),
        )
        return event.delivered_at is not None
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
    response = f"{status} {text}"[:300]
    if 200 <= status < 300:
        deliveries = event.deliveries + 1
        again = deliveries < event.copies  # chaos: a second copy of the same event, later
        _record(
            event,
            last_response=response,
            deliveries=deliveries,
            delivered_at=event.delivered_at or now,
            next_attempt_at=now + chaos.later() if again else None,
        )
        return True
    if now - event.created > GIVE_UP_AFTER:
        logger.error("sandbox event %s undeliverable: %s", event.id, response)
        _record(event, last_response=response, next_attempt_at=None)
    else:
        _record(event, last_response=response, next_attempt_at=now + _backoff(event.attempts))
    return event.delivered_at is not None


def undelivered_event_ids(*, limit: int = 500) -> list[str]:
    """Events owed an attempt that is due by the sandbox's clock, in delivery order."""
    return list(
        SandboxEvent.objects.filter(next_attempt_at__lte=engine.now())
        .order_by("delivery_order", "created", "id")
        .values_list("id", flat=True)[:limit]
    )


def sandbox_events_redeliver() -> int:
    return sum(
        sandbox_event_deliver(event_id=event_id, early=False)
        for event_id in undelivered_event_ids()
    )
