"""Webhook events: recording them once, and processing them once through the handlers that each
app registers for the types it owns."""

import json
import logging
import math
import re
import traceback
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import mail_admins
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from payments.gateway import GatewayError
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
        "invoice.finalization_failed",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.pending_update_applied",
        "customer.subscription.pending_update_expired",
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "customer.updated",
        "customer.deleted",
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
    """A validly signed body that is not an event we can store and process. When its event id
    could be read, the event is stored as failed with the reason (staff see it in the admin)."""

    def __init__(self, reason: str, *, event_id: str = "", event_type: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.event_id = event_id
        self.event_type = event_type


REFUSED_AT_INTAKE = "Refused at intake: "
# Stripe's objects nest a dozen levels at most; deeper is not an event, and would only test the
# recursion of every JSON encoder between here and the handlers.
MAX_DEPTH = 64
# `created` is a Unix time in whole seconds; these bounds keep it a date (1e20 overflowed).
EARLIEST_CREATED = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp())
LATEST_CREATED = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp())
# The event id where Stripe puts it, first, for bodies too broken to parse.
_LEADING_ID = re.compile(rb'\A\s*\{\s*"id"\s*:\s*"([A-Za-z0-9_\-]{1,255})"')
# PostgreSQL's jsonb refuses NUL and lone surrogates in strings.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text[:20]} is not a finite number")
    return number


def _no_constant(text: str) -> float:
    raise ValueError(f"{text} is not a number")


def _unstorable(data: object) -> str:
    """Why the parsed body cannot be stored as it is (too deep, NUL, lone surrogate), or "". Walks
    without recursion."""
    pending: list[tuple[object, int]] = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list) and depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels"
        if isinstance(value, dict):
            for key, item in value.items():
                if _UNSTORABLE.search(key):
                    return "a key holds a NUL character or a lone surrogate"
                pending.append((item, depth + 1))
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)
        elif isinstance(value, str) and _UNSTORABLE.search(value):
            return "a string holds a NUL character or a lone surrogate"
    return ""


def _leading_id(payload: bytes) -> str:
    match = _LEADING_ID.match(payload)
    return match.group(1).decode() if match else ""


def _text(value: object, *, longest: int) -> str:
    if isinstance(value, str) and 0 < len(value) <= longest and not _UNSTORABLE.search(value):
        return value
    return ""


def _event_read(payload: bytes) -> tuple[dict[str, Any], str, str, int]:
    """(event, id, type, created) of a signed body, or BadEvent saying what is wrong with it."""
    try:
        data = json.loads(payload, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:
        raise BadEvent("nested too deeply to read", event_id=_leading_id(payload)) from None
    except ValueError as error:
        reason = f"not JSON ({str(error)[:80]})"
        raise BadEvent(reason, event_id=_leading_id(payload)) from None
    if not isinstance(data, dict):
        raise BadEvent(f"the body is a JSON {type(data).__name__}, not an event")
    event_id = _text(data.get("id"), longest=255)
    if not event_id:
        raise BadEvent("no event id")
    event_type = _text(data.get("type"), longest=100)
    if not event_type:
        raise BadEvent("no event type", event_id=event_id)
    created = data.get("created")
    if type(created) is not int or not EARLIEST_CREATED <= created < LATEST_CREATED:
        reason = f"created {str(created)[:30]} is not a Unix time between 2000 and 2100"
        raise BadEvent(reason, event_id=event_id, event_type=event_type)
    obj = data.get("data")
    if not isinstance(obj, dict) or not isinstance(obj.get("object"), dict):
        raise BadEvent("data.object is not an object", event_id=event_id, event_type=event_type)
    if problem := _unstorable(data):
        raise BadEvent(problem, event_id=event_id, event_type=event_type)
    return data, event_id, event_type, created


def _refused_record(*, bad: BadEvent, payload: bytes) -> None:
    """Keep a refused event whose id we know, as failed with the reason and nothing owed: Stripe
    keeps redelivering it (each one counted), and staff can see what came and why."""
    try:
        data = json.loads(payload, parse_float=_finite, parse_constant=_no_constant)
    except (RecursionError, ValueError):
        data = None
    if not isinstance(data, dict) or _unstorable(data):
        excerpt = payload[:2000].decode("utf-8", errors="replace")
        data = {"id": bad.event_id, "type": bad.event_type, "excerpt": _UNSTORABLE.sub("", excerpt)}
    try:
        with transaction.atomic():
            WebhookEvent.objects.create(
                event_id=bad.event_id,
                type=bad.event_type or "unreadable",
                livemode=bool(data.get("livemode")),
                created=timezone.now(),  # its own is unreadable or absurd
                payload=data,
                status=WebhookEvent.Status.FAILED,
                last_error=REFUSED_AT_INTAKE + bad.reason,
                next_attempt_at=None,
            )
    except IntegrityError:
        WebhookEvent.objects.filter(event_id=bad.event_id).update(deliveries=F("deliveries") + 1)
    logger.warning("webhook event %s refused: %s", bad.event_id, bad.reason)


def webhook_event_record(*, payload: bytes, signature: str) -> tuple[WebhookEvent, bool]:
    """Verify and store an event under its unique id. Returns (event, created). A signed body that
    is not an event raises BadEvent, after storing it as failed when its id could be read."""
    verify(payload, header=signature, secret=settings.STRIPE_WEBHOOK_SECRET)
    try:
        data, event_id, event_type, created = _event_read(payload)
    except BadEvent as bad:
        if bad.event_id:
            _refused_record(bad=bad, payload=payload)
        raise
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


def permanent_error(error: BaseException) -> GatewayError | None:
    """The gateway error that waiting cannot heal behind `error` (raised directly, or the cause of
    what a service raised), if any."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, GatewayError) and current.permanent:
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _claim(webhook_event_id: int) -> WebhookEvent | None:
    """Claim an owed event for this worker with one conditional UPDATE: pending or failed, or
    processing by a worker whose claim has lapsed (it died). Concurrent workers: one wins."""
    now = timezone.now()
    owed = Q(status__in=[WebhookEvent.Status.PENDING, WebhookEvent.Status.FAILED]) | Q(
        status=WebhookEvent.Status.PROCESSING, next_attempt_at__lte=now
    )
    # Durable: the handlers must not run inside the caller's transaction (no gateway call inside
    # one), so the dispatcher refuses to be called inside one.
    with transaction.atomic(durable=True):
        claimed = (
            WebhookEvent.objects.filter(owed, pk=webhook_event_id)
            .exclude(last_error__startswith=REFUSED_AT_INTAKE)
            .update(
                status=WebhookEvent.Status.PROCESSING,
                attempts=F("attempts") + 1,
                next_attempt_at=now + settings.WEBHOOK_PROCESSING_LEASE,
            )
        )
    if not claimed:
        return None
    return WebhookEvent.objects.get(pk=webhook_event_id)


def _finish(event: WebhookEvent, **fields: Any) -> bool:
    """Record how this worker's claim ended, unless the claim lapsed and another took the event."""
    return bool(
        WebhookEvent.objects.filter(
            pk=event.pk, status=WebhookEvent.Status.PROCESSING, attempts=event.attempts
        ).update(**fields)
    )


def _needs_person_tell(event: WebhookEvent, error: GatewayError) -> None:
    mail_admins(
        f"Webhook event {event.event_id} needs a person",
        f"{event.type} {event.event_id} failed {event.permanent_failures} times with an error "
        f"that waiting cannot heal, and is no longer retried:\n\n{error}\n\n"
        'Staff: Webhook events, filter "Needs a person"; replay it once the cause is fixed.',
        fail_silently=True,
    )


def _ignore(webhook_event_id: int) -> str | None:
    """A type nobody handles or subscribes to: stored, marked ignored, nothing run."""
    ignored = WebhookEvent.objects.filter(
        pk=webhook_event_id,
        status__in=[WebhookEvent.Status.PENDING, WebhookEvent.Status.FAILED],
    ).exclude(last_error__startswith=REFUSED_AT_INTAKE)
    if ignored.update(
        status=WebhookEvent.Status.IGNORED, attempts=F("attempts") + 1, next_attempt_at=None
    ):
        return WebhookEvent.Status.IGNORED
    return None


def _failed(event: WebhookEvent, error: Exception) -> str | None:
    """A transient error: again after a backoff (5 minutes doubling to 6 hours). One that waiting
    cannot heal: the same, WEBHOOK_PERMANENT_ERROR_ATTEMPTS times, then set aside for a person
    (ADMINS emailed the first time)."""
    last_error = traceback.format_exc(limit=5)[-4000:]
    permanent = permanent_error(error)
    if permanent is not None:
        event.permanent_failures += 1
    if permanent is None or event.permanent_failures < settings.WEBHOOK_PERMANENT_ERROR_ATTEMPTS:
        status = WebhookEvent.Status.FAILED
        next_attempt_at: datetime | None = timezone.now() + _backoff(event.attempts)
    else:
        status, next_attempt_at = WebhookEvent.Status.NEEDS_PERSON, None
    first_time = status == WebhookEvent.Status.NEEDS_PERSON and not event.needs_person_since
    if not _finish(
        event,
        status=status,
        last_error=last_error,
        next_attempt_at=next_attempt_at,
        permanent_failures=event.permanent_failures,
        needs_person_since=timezone.now() if first_time else event.needs_person_since,
    ):
        return None
    if first_time and permanent is not None:
        logger.error("webhook event %s needs a person: %s", event.event_id, permanent)
        _needs_person_tell(event, permanent)
    return status


def webhook_event_process(*, webhook_event_id: int) -> str | None:
    """Process an owed event. The worker claims it (a conditional UPDATE with a lease), runs the
    handlers with no transaction open, so that they read from the gateway first and write in
    their own short transactions, then records the outcome under its claim. Exactly-once effects
    come from the handlers: idempotent by ledger keys and state comparisons, so that a run cut
    short (the worker died; the claim lapses and the sweep runs it again) or repeated is harmless.
    Returns the new status, or None when the event was not owed or another worker has it."""
    event_type = _event_type(webhook_event_id)
    if not _handlers.get(event_type) and event_type not in SUBSCRIBED_TYPES:
        return _ignore(webhook_event_id)
    event = _claim(webhook_event_id)
    if event is None:
        return None
    try:
        for handler in _handlers.get(event.type, []):
            handler(event)
    except Exception as error:
        logger.exception("webhook event %s failed", event.event_id)
        return _failed(event, error)
    processed = _finish(
        event,
        status=WebhookEvent.Status.PROCESSED,
        processed_at=timezone.now(),
        last_error="",
        next_attempt_at=None,
    )
    return WebhookEvent.Status.PROCESSED if processed else None


def _event_type(webhook_event_id: int) -> str:
    return (
        WebhookEvent.objects.filter(pk=webhook_event_id).values_list("type", flat=True).first()
        or ""
    )


def owed_event_ids(*, now: datetime | None = None) -> list[int]:
    """Events whose processing is owed and due: failed ones after their backoff, pending ones
    whose own task apparently never ran, processing ones whose worker's claim has lapsed."""
    now = now or timezone.now()
    return list(
        WebhookEvent.objects.filter(
            Q(
                status__in=[
                    WebhookEvent.Status.PENDING,
                    WebhookEvent.Status.FAILED,
                    WebhookEvent.Status.PROCESSING,
                ]
            ),
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
    """Run an event's handlers again (staff action), also one that needs a person once its cause
    is fixed. Handlers are idempotent: nothing changes unless an earlier run missed something. An
    event refused at intake has nothing to run; one a worker is processing is left to it."""
    if event.last_error.startswith(REFUSED_AT_INTAKE):
        return event.status
    now = timezone.now()
    WebhookEvent.objects.filter(pk=event.pk).exclude(
        status=WebhookEvent.Status.PROCESSING, next_attempt_at__gt=now
    ).update(status=WebhookEvent.Status.PENDING, next_attempt_at=now)
    return (
        webhook_event_process(webhook_event_id=event.pk)
        or WebhookEvent.objects.get(pk=event.pk).status
    )
