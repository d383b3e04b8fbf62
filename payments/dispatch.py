"""Webhook events: recording them once, and processing them once through the handlers that each
app registers for the types it owns."""

import json
import logging
import traceback
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from payments.models import WebhookEvent
from payments.signing import verify

logger = logging.getLogger(__name__)

Handler = Callable[[WebhookEvent], None]

# The types the product subscribes to. Each is processed (and marked so) even while no app has a
# handler for it yet; any other type is stored and ignored.
SUBSCRIBED_TYPES = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_failed",
        "invoice.payment_action_required",
        "invoice.voided",
        "invoice.marked_uncollectible",
        "invoice.updated",
        "invoice.payment_succeeded",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.pending_update_applied",
        "customer.subscription.pending_update_expired",
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "customer.updated",
        "payment_method.attached",
        # Refunds and disputes: the refund and the dispute are re-read from the gateway, so any
        # of these events (in any order, twice) leads to the same ledger entries.
        "charge.refunded",
        "refund.created",
        "refund.updated",
        "refund.failed",
        "charge.dispute.created",
        "charge.dispute.updated",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.funds_reinstated",
        "charge.dispute.closed",
    }
)

_handlers: dict[str, list[Handler]] = defaultdict(list)

# Delay before the retry sweep picks up an event whose own task never ran (e.g. Redis was down).
PICKUP_DELAY = timedelta(minutes=2)


def handles(*types: str) -> Callable[[Handler], Handler]:
    """Register a handler. Handlers must be idempotent and tolerate any order of events."""

    def register(handler: Handler) -> Handler:
        for event_type in types:
            _handlers[event_type].append(handler)
        return handler

    return register


class BadEvent(Exception):
    pass


def webhook_event_record(*, payload: bytes, signature: str) -> tuple[WebhookEvent, bool]:
    """Verify and store an event under its unique id. Returns (event, created)."""
    verify(payload, header=signature, secret=settings.STRIPE_WEBHOOK_SECRET)
    try:
        data = json.loads(payload)
        event_id, event_type, created = data["id"], data["type"], int(data["created"])
    except (ValueError, KeyError, TypeError):
        raise BadEvent("not a Stripe event") from None
    if not isinstance(event_id, str) or not isinstance(event_type, str):
        raise BadEvent("not a Stripe event")
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.create(
                event_id=event_id,
                type=event_type,
                livemode=bool(data.get("livemode")),
                created=datetime.fromtimestamp(created, tz=UTC),
                payload=data,
                next_attempt_at=timezone.now() + PICKUP_DELAY,
            )
    except IntegrityError:
        WebhookEvent.objects.filter(event_id=event_id).update(deliveries=F("deliveries") + 1)
        return WebhookEvent.objects.get(event_id=event_id), False
    return event, True


def _backoff(attempts: int) -> timedelta:
    return min(timedelta(minutes=5) * 2 ** max(attempts - 1, 0), timedelta(hours=6))


def webhook_event_process(*, webhook_event_id: int) -> str | None:
    """Process an owed event exactly once. The row lock (skip_locked) keeps concurrent workers
    apart; the handlers run in the same transaction as the status change, so a worker that dies
    midway leaves the event owed and nothing half-done."""
    with transaction.atomic():
        event = (
            WebhookEvent.objects.select_for_update(skip_locked=True)
            .filter(
                pk=webhook_event_id,
                status__in=[WebhookEvent.Status.PENDING, WebhookEvent.Status.FAILED],
            )
            .first()
        )
        if event is None:
            return None
        event.attempts += 1
        handlers = _handlers.get(event.type, [])
        if not handlers and event.type not in SUBSCRIBED_TYPES:
            event.status = WebhookEvent.Status.IGNORED
        else:
            try:
                with transaction.atomic():
                    for handler in handlers:
                        handler(event)
            except Exception:
                logger.exception("webhook event %s failed", event.event_id)
                event.status = WebhookEvent.Status.FAILED
                event.last_error = traceback.format_exc(limit=5)[-4000:]
                event.next_attempt_at = timezone.now() + _backoff(event.attempts)
            else:
                event.status = WebhookEvent.Status.PROCESSED
                event.processed_at = timezone.now()
                event.last_error = ""
                event.next_attempt_at = None
        event.save(
            update_fields=["status", "attempts", "last_error", "next_attempt_at", "processed_at"]
        )
        return event.status


def owed_event_ids(*, now: datetime | None = None) -> list[int]:
    """Events whose processing is owed and due: failed ones after their backoff, pending ones
    whose own task apparently never ran."""
    now = now or timezone.now()
    return list(
        WebhookEvent.objects.filter(
            Q(status__in=[WebhookEvent.Status.PENDING, WebhookEvent.Status.FAILED]),
            next_attempt_at__lte=now,
        )
        .order_by("created", "pk")
        .values_list("pk", flat=True)[:500]
    )


def webhook_events_retry() -> int:
    processed = 0
    for webhook_event_id in owed_event_ids():
        if webhook_event_process(webhook_event_id=webhook_event_id):
            processed += 1
    return processed


def webhook_event_replay(*, event: WebhookEvent) -> str | None:
    """Run an event's handlers again (staff action). Handlers are idempotent: nothing changes
    unless an earlier run missed something."""
    WebhookEvent.objects.filter(pk=event.pk).update(
        status=WebhookEvent.Status.PENDING, next_attempt_at=timezone.now()
    )
    return webhook_event_process(webhook_event_id=event.pk)
