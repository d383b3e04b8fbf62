"""Every write about seats: purchase, addition, removal, cancel and resume, the mirror of the
gateway's subscription, and the receipts of paid seat invoices. Each writes audit events and emails
the billing contacts.

Rules of this module:
- The gateway is called outside database transactions (it has its own). Changes of one
  organization's seats are serialized by a PostgreSQL advisory lock held across the gateway call
  (`_seat_change_lock`), so that two people adding seats at once each start from the quantity the
  other left. The call is bounded (the Stripe client's timeouts and retries), and nobody waits
  for the lock longer than SEAT_CHANGE_LOCK_WAIT: they are told to try again.
- The gateway is the source of truth: after any change the local row is re-fetched from it
  (`seat_subscription_refresh`), as the webhooks do.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import Q
from django.db.models.expressions import RawSQL
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from billing.clock import billing_now
from billing.exceptions import CurrencyMismatch
from billing.notify import email_billing_contacts
from billing.services import (
    billing_currency_lock,
    billing_profile_for,
    gateway_customer_ensure,
    gateway_customer_with_card,
)
from billing.templatetags.money import cents
from organizations.exceptions import RowBusy
from organizations.locks import lock_wait_bounded
from organizations.models import Organization
from organizations.services import audit_record
from payments.factory import get_gateway
from payments.gateway import CardError, GatewayError, Invoice, Subscription
from payments.signals import invoice_fetched
from seats.exceptions import (
    AuthenticationRequired,
    NoEmptySeat,
    NoSeatSubscription,
    PaymentFailed,
    SeatChangeBusy,
    SeatError,
    SeatsInUse,
    StalePreview,
)
from seats.models import MAX_SEATS, SEAT_ROLES, SeatChange, SeatPlan, SeatReceipt, SeatSubscription
from seats.selectors import (
    live_seat_subscription,
    occupied_seat_count,
    seat_addition_preview,
    seat_occupancy,
    seat_subscription,
)

logger = logging.getLogger(__name__)

METADATA_PURPOSE = "seats"
SEATS_ON_HOLD = (
    "The seats are on hold: the subscription is unpaid. Pay the overdue invoices (Invoices → "
    "Pay now) and the same seats come back; nothing new needs to be bought."
)
# A preview older than this is recomputed before charging: its proration date would charge for
# time that has already passed.
PREVIEW_VALID_FOR = timedelta(minutes=15)
# A pending addition this recent may be the one a webhook's invoice belongs to (see
# `_change_for_invoice`); older pending ones are left to reconciliation.
IN_FLIGHT = timedelta(hours=1)
_LOCK_NAMESPACE = 0x5EA7
# How long a seat change waits for another one of the same organization to finish. The other
# holds the lock for one gateway exchange, at most about a minute (the Stripe client: 5 s to
# connect, 20 s to read, 2 retries); a person is not kept waiting that long.
SEAT_CHANGE_LOCK_WAIT = timedelta(seconds=10)


# Locking


def _lock_key(organization_id: UUID) -> int:
    return int.from_bytes(organization_id.bytes[:4], "big", signed=True)


@contextmanager
def _seat_change_lock(organization_id: UUID) -> Iterator[None]:
    """One seat change per organization at a time, across processes, for the whole exchange with
    the gateway. A session-level advisory lock, because that exchange must not sit inside a
    database transaction; the connection closing releases it if the process dies."""
    key = _lock_key(organization_id)
    wait_ms = int(SEAT_CHANGE_LOCK_WAIT.total_seconds() * 1000)
    # lock_timeout bounds the wait for an advisory lock too; set for this short transaction
    # only. The lock itself is the session's and outlives it.
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{wait_ms}ms"])
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [_LOCK_NAMESPACE, key])
    except OperationalError as timed_out:
        raise SeatChangeBusy from timed_out
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_NAMESPACE, key])


# Small helpers


def _check_count(seats: int) -> None:
    if not 1 <= seats <= MAX_SEATS:
        raise SeatError(f"Choose a whole number of seats from 1 to {MAX_SEATS:,}.")


def _seats_url(organization: Organization) -> str:
    return settings.SITE_URL + reverse("org_seats", args=[organization.pk])


def _plural(count: int, word: str = "seat") -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _email(
    organization: Organization, subject: str, template: str, context: dict[str, Any]
) -> None:
    email_billing_contacts(
        organization=organization,
        subject=subject,
        template=template,
        context={"seats_url": _seats_url(organization), **context},
    )


def _change_for_key(
    organization: Organization, idempotency_key: str, kind: str
) -> SeatChange | None:
    change = SeatChange.objects.filter(idempotency_key=idempotency_key).first()
    if change is not None and (change.organization_id != organization.pk or change.kind != kind):
        raise SeatError("This confirmation was already used for something else; start again.")
    return change


def _change_claim(change: SeatChange, **fields: Any) -> bool:
    """Move a change to SUCCEEDED exactly once (the service and a webhook may both try)."""
    return bool(
        SeatChange.objects.filter(
            pk=change.pk, status__in=[SeatChange.Status.PENDING, SeatChange.Status.FAILED]
        ).update(status=SeatChange.Status.SUCCEEDED, completed_at=timezone.now(), **fields)
    )


def _change_fail(change: SeatChange, *, message: str, action: str, invoice_id: str = "") -> None:
    with transaction.atomic():
        failed = SeatChange.objects.filter(pk=change.pk, status=SeatChange.Status.PENDING).update(
            status=SeatChange.Status.FAILED,
            failure_message=message[:300],
            gateway_invoice_id=invoice_id or change.gateway_invoice_id,
            completed_at=timezone.now(),
        )
        if failed:
            audit_record(
                organization=change.organization,
                actor=change.actor,
                action=action,
                target=_plural(change.seats),
                reason=message[:300],
                invoice=invoice_id,
            )


# The mirror of the gateway's subscription


def _apply(row: SeatSubscription, fetched: Subscription) -> None:
    row.gateway_subscription_id = fetched.id
    row.gateway_customer_id = fetched.customer
    row.gateway_created = fetched.created
    row.status = fetched.status
    row.quantity = fetched.quantity
    row.pending_quantity = fetched.pending_quantity
    row.unit_amount = fetched.unit_amount
    row.current_period_start = fetched.current_period_start
    row.current_period_end = fetched.current_period_end
    row.cancel_at_period_end = fetched.cancel_at_period_end
    row.synced_at = timezone.now()
    plan_code = fetched.metadata.get("seat_plan")
    if plan_code and (plan := SeatPlan.objects.filter(code=plan_code).first()):
        row.plan = plan
    if row.is_live:
        row.ended_at = None
        if row.activated_at is None:
            row.activated_at = timezone.now()


def _replaces(row: SeatSubscription, fetched: Subscription) -> bool:
    """Whether a subscription other than the row's becomes the organization's: only a newer one,
    and never over live seats (a late event of an old subscription changes nothing)."""
    if row.is_live or row.on_hold:
        if fetched.status in SeatSubscription.LIVE_STATUSES:
            logger.error(
                "organization %s has a second live seat subscription %s besides %s",
                row.organization_id,
                fetched.id,
                row.gateway_subscription_id,
            )
        return False
    return fetched.created >= row.gateway_created


def _organization_of(subscription_id: str) -> tuple[UUID | None, Subscription | None]:
    known = (
        SeatSubscription.objects.filter(gateway_subscription_id=subscription_id)
        .values_list("organization_id", flat=True)
        .first()
    )
    if known is not None:
        return known, None
    fetched = get_gateway().subscription_retrieve(subscription_id=subscription_id)
    if fetched.metadata.get("purpose") != METADATA_PURPOSE:
        return None, fetched
    try:
        organization_id = UUID(fetched.metadata.get("organization_id", ""))
    except ValueError:
        return None, fetched
    if not Organization.objects.filter(pk=organization_id).exists():
        return None, fetched
    return organization_id, fetched


# How many times a refresh reads the gateway again because the row changed while it was reading.
REFRESH_TRIES = 5


class _ChangedMeanwhile(Exception):
    """The organization's row changed between reading its version and locking it."""


def _row_version(organization_id: UUID) -> str | None:
    """The row's version: PostgreSQL's xmin, new with every write to the row. None: no row."""
    return (
        SeatSubscription.objects.filter(organization_id=organization_id)
        .annotate(version=RawSQL("xmin::text", ()))
        .values_list("version", flat=True)
        .first()
    )


def seat_subscription_refresh(*, subscription_id: str) -> SeatSubscription | None:
    """Mirror the gateway's subscription. It is read first, with no transaction open, then
    written under the organization's row lock only if nobody wrote the row since the read began
    (its version is unchanged); otherwise it is read again. So the last write always comes from
    the newest read, whatever order events arrive in. Creates the row from the purchase's
    metadata; records the end of a subscription once. None for subscriptions that are not seat
    subscriptions of a known organization."""
    organization_id, _ = _organization_of(subscription_id)
    if organization_id is None:
        return None
    gateway = get_gateway()
    for _ in range(REFRESH_TRIES):
        seen = _row_version(organization_id)
        fetched = gateway.subscription_retrieve(subscription_id=subscription_id)
        try:
            return _refresh_store(organization_id, fetched, seen=seen)
        except _ChangedMeanwhile:
            continue
    raise SeatChangeBusy


# Durable: the refresh reads the gateway before it, so it is never called inside a transaction.
@transaction.atomic(durable=True)
def _refresh_store(
    organization_id: UUID, fetched: Subscription, *, seen: str | None
) -> SeatSubscription:
    rows = SeatSubscription.objects.select_for_update().filter(organization_id=organization_id)
    with lock_wait_bounded(SeatChangeBusy):
        row = rows.first()
        if row is None:
            # Serializes the creation of the organization's row (only ever taken here).
            list(Organization.objects.select_for_update().filter(pk=organization_id).values("pk"))
            row = rows.first()
    if _row_version(organization_id) != seen:
        raise _ChangedMeanwhile  # read again: what was read may be older than what is stored
    _link_purchase(organization_id, fetched)
    if row is None:
        row = SeatSubscription(organization_id=organization_id)
    elif row.gateway_subscription_id != fetched.id:
        if not _replaces(row, fetched):
            return row
        # A new subscription after the old one ended; activated_at stays, so the seat rules
        # keep applying while it is not paid yet.
        row.removing = 0
    # Unpaid is not ended: the same subscription comes back when paid (seats on hold).
    was_live = row.pk is not None and (row.is_live or row.on_hold)
    was_on_hold = row.pk is not None and row.on_hold
    _apply(row, fetched)
    ended = was_live and not (row.is_live or row.on_hold)
    if ended:
        row.ended_at = timezone.now()
    row.save()
    _hold_record(row, was_on_hold=was_on_hold, was_live=was_live)
    if ended:
        organization = Organization.objects.get(pk=organization_id)
        audit_record(
            organization=organization,
            actor=None,
            action="seats.end",
            target=_plural(row.quantity),
            subscription=row.gateway_subscription_id,
        )
        _email(
            organization,
            f"Seats ended for {organization.name}",
            "emails/seats_end.txt",
            {"subscription": row},
        )
    return row


def _hold_record(row: SeatSubscription, *, was_on_hold: bool, was_live: bool) -> None:
    """An audit event when the gateway puts the seats on hold (the subscription became unpaid:
    nobody holds a seat until it is paid) and when paying lifts it. The lifecycle's emails
    already tell the billing contacts about the overdue invoices."""
    if row.on_hold == was_on_hold or not (was_live or row.is_live):
        return
    audit_record(
        organization=Organization.objects.get(pk=row.organization_id),
        actor=None,
        action="seats.hold" if row.on_hold else "seats.hold_lifted",
        target=_plural(row.quantity),
        subscription=row.gateway_subscription_id,
    )


def seats_customer_deleted(*, customer_id: str) -> list[SeatSubscription]:
    """The gateway customer was deleted in the gateway's dashboard, which cancels its
    subscriptions at once (https://docs.stripe.com/api/customers/delete): each seat subscription
    of that customer is mirrored again, as customer.subscription.deleted would (so either event
    may come first, or twice), and ended here if the gateway no longer has it. A subscription of
    another customer (the organization bought again since: a late event) is left alone."""
    ended = []
    for subscription_id in (
        SeatSubscription.objects.filter(gateway_customer_id=customer_id)
        .exclude(gateway_customer_id="")
        .exclude(status__in=SeatSubscription.ENDED_STATUSES)
        .values_list("gateway_subscription_id", flat=True)
    ):
        try:
            row = seat_subscription_refresh(subscription_id=subscription_id)
        except GatewayError as error:
            if not error.missing:
                raise
            row = seat_subscription_gone(subscription_id=subscription_id)
        if row is not None and row.has_ended:
            ended.append(row)
    return ended


def seat_subscription_gone(*, subscription_id: str) -> SeatSubscription | None:
    """End a seat subscription the gateway no longer has (its customer deleted: Stripe may answer
    resource_missing for it), once: status canceled, the seats 0, audited and told."""
    with transaction.atomic():
        row = (
            SeatSubscription.objects.select_for_update()
            .select_related("organization")
            .filter(gateway_subscription_id=subscription_id)
            .first()
        )
        if row is None or row.has_ended:
            return row
        row.status = SeatSubscription.Status.CANCELED
        row.ended_at = timezone.now()
        row.removing = 0
        row.synced_at = timezone.now()
        row.save()
        organization = row.organization
        audit_record(
            organization=organization,
            actor=None,
            action="seats.end",
            target=_plural(row.quantity),
            subscription=row.gateway_subscription_id,
        )
        _email(
            organization,
            f"Seats ended for {organization.name}",
            "emails/seats_end.txt",
            {"subscription": row},
        )
    return row


def _link_purchase(organization_id: UUID, fetched: Subscription) -> None:
    key = fetched.metadata.get("seat_change")
    if key:
        SeatChange.objects.filter(
            idempotency_key=key,
            organization_id=organization_id,
            kind=SeatChange.Kind.PURCHASE,
            gateway_subscription_id="",
        ).update(gateway_subscription_id=fetched.id)


# Receipts of paid seat invoices

_RECEIPT_KINDS = {
    "subscription_create": SeatReceipt.Kind.PURCHASE,
    "subscription_update": SeatReceipt.Kind.ADD,
    "subscription_cycle": SeatReceipt.Kind.RENEWAL,
}


def _change_for_invoice(row: SeatSubscription, invoice: Invoice, kind: str) -> SeatChange | None:
    changes = SeatChange.objects.select_related("actor").filter(organization_id=row.organization_id)
    if kind == SeatReceipt.Kind.PURCHASE:
        return changes.filter(
            kind=SeatChange.Kind.PURCHASE, gateway_subscription_id=invoice.subscription
        ).first()
    if kind == SeatReceipt.Kind.ADD:
        # The addition that asked for this invoice: known by its id once the service has the
        # gateway's answer, else the one in flight (additions are serialized per organization).
        return (
            changes.filter(kind=SeatChange.Kind.ADD, gateway_invoice_id=invoice.id).first()
            or changes.filter(
                kind=SeatChange.Kind.ADD,
                status=SeatChange.Status.PENDING,
                gateway_subscription_id=invoice.subscription,
                gateway_invoice_id="",
                created_at__gte=timezone.now() - IN_FLIGHT,
            )
            .order_by("-created_at")
            .first()
        )
    return None


def seat_invoice_paid(*, invoice: Invoice) -> SeatReceipt | None:
    """Record a paid seat invoice (purchase, addition, renewal) once: the receipt, the change it
    completes, an audit event and an email. Called with the gateway's answer and from the
    `invoice.paid` webhook; the unique invoice id makes the second call do nothing."""
    kind = _RECEIPT_KINDS.get(invoice.billing_reason)
    if kind is None or not invoice.paid or not invoice.subscription:
        return None
    row = SeatSubscription.objects.filter(gateway_subscription_id=invoice.subscription).first()
    if row is None:
        row = seat_subscription_refresh(subscription_id=invoice.subscription)
        if row is None or row.gateway_subscription_id != invoice.subscription:
            return None
    with transaction.atomic(durable=True):
        if SeatReceipt.objects.filter(gateway_invoice_id=invoice.id).exists():
            return None
        # Serializes the service and the webhook recording the same invoice.
        with lock_wait_bounded(SeatChangeBusy):
            row = (
                SeatSubscription.objects.select_for_update()
                .select_related("organization")
                .get(pk=row.pk)
            )
        if SeatReceipt.objects.filter(gateway_invoice_id=invoice.id).exists():
            return None
        change = _change_for_invoice(row, invoice, kind)
        plain_lines = [line for line in invoice.lines if not line.proration]
        quantity = sum(line.quantity for line in plain_lines) or row.quantity
        if change is not None and change.quantity_after is not None:
            quantity = change.quantity_after
        receipt = SeatReceipt.objects.create(
            organization=row.organization,
            kind=kind,
            gateway_invoice_id=invoice.id,
            invoice_number=invoice.number,
            amount=invoice.amount_paid,
            quantity=quantity,
            seats=change.seats if change else None,
            change=change,
        )
        if change is not None:
            _change_claim(change, amount=invoice.amount_paid, gateway_invoice_id=invoice.id)
        _receipt_tell(row, receipt, invoice, change)
    return receipt


def _receipt_tell(
    row: SeatSubscription, receipt: SeatReceipt, invoice: Invoice, change: SeatChange | None
) -> None:
    organization = row.organization
    actor = change.actor if change else None
    action, subject, template = {
        SeatReceipt.Kind.PURCHASE: (
            "seats.purchase",
            f"Seats bought for {organization.name}: {_plural(receipt.quantity)}",
            "emails/seats_purchase.txt",
        ),
        SeatReceipt.Kind.ADD: (
            "seats.add",
            f"Seats added to {organization.name}: {cents(receipt.amount)} charged",
            "emails/seats_add.txt",
        ),
        SeatReceipt.Kind.RENEWAL: (
            "seats.renew",
            f"Seat renewal receipt for {organization.name}",
            "emails/seats_renewal.txt",
        ),
    }[SeatReceipt.Kind(receipt.kind)]
    audit_record(
        organization=organization,
        actor=actor,
        action=action,
        target=_plural(receipt.seats or receipt.quantity),
        amount=receipt.amount,
        invoice=invoice.number or invoice.id,
        quantity=receipt.quantity,
    )
    period = next((line for line in invoice.lines if not line.proration), None)
    _email(
        organization,
        subject,
        template,
        {
            "receipt": receipt,
            "invoice": invoice,
            "subscription": row,
            "actor": actor,
            "period_start": period.period_start if period else row.current_period_start,
            "period_end": period.period_end if period else row.current_period_end,
        },
    )


# The seat rule of team changes (registered with organizations.rules in seats/apps.py)


def seat_require_empty(
    *, organization_id: UUID, role: str, invitation_id: int | None = None
) -> None:
    """Refuse (NoEmptySeat) to give `role` a seat when none is empty. `invitation_id`: the pending
    invitation being accepted, whose seat is the one being taken.

    Must run inside the caller's transaction: it locks the organization's seat subscription row,
    which seat removal locks too, so that a removal and an invitation or acceptance are serialized
    and never leave more seat-holders than seats."""
    if role not in SEAT_ROLES:
        return
    with lock_wait_bounded(RowBusy):
        subscription = (
            SeatSubscription.objects.select_for_update()
            .filter(organization_id=organization_id)
            .first()
        )
    if subscription is None or not subscription.limited:
        return
    occupied = occupied_seat_count(
        organization_id=organization_id, exclude_invitation_id=invitation_id
    )
    if occupied >= subscription.seats:
        raise NoEmptySeat(seats=subscription.seats, occupied=occupied)


# Purchase


@dataclass(frozen=True)
class PurchaseStarted:
    change: SeatChange
    checkout_url: str = ""  # where the buyer pays, when there is no saved card


def seats_purchase(
    *,
    actor: User,
    organization: Organization,
    plan: SeatPlan,
    seats: int,
    idempotency_key: str,
    success_url: str,
    cancel_url: str,
) -> PurchaseStarted:
    """First purchase: `seats` (at least the seats already taken) on `plan`, monthly from today.
    With a saved card the first invoice is paid now and the seats exist on return; without one the
    buyer pays on Checkout and the webhook brings the seats."""
    _check_count(seats)
    gateway = get_gateway()
    with _seat_change_lock(organization.pk):
        change = _change_for_key(organization, idempotency_key, SeatChange.Kind.PURCHASE)
        if change is not None and change.status != SeatChange.Status.PENDING:
            return PurchaseStarted(change=change)
        if change is not None and change.checkout_session_id:
            session = gateway.checkout_session_retrieve(session_id=change.checkout_session_id)
            return PurchaseStarted(change=change, checkout_url=session.url)
        if change is None:
            if not plan.is_active:
                raise SeatError(f"The {plan.name} plan is no longer offered; choose another.")
            current = seat_subscription(organization=organization)
            if current is not None and (current.is_live or current.on_hold):
                raise SeatError(
                    SEATS_ON_HOLD
                    if current.on_hold
                    else "This organization already has seats: add seats instead."
                )
            occupied = occupied_seat_count(organization_id=organization.pk)
            if seats < occupied:
                raise SeatError(
                    f"{_plural(occupied, 'person')} and open invitations need a seat: "
                    f"buy at least {occupied}."
                )
        profile = billing_profile_for(organization=organization)
        try:
            billing_currency_lock(profile=profile, currency=plan.currency)
        except CurrencyMismatch as mismatch:
            raise SeatError(mismatch.message) from None
        customer_id, card = gateway_customer_with_card(profile)
        price = gateway.price_ensure(
            lookup_key=plan.lookup_key,
            product_name=f"{plan.name} seat",
            unit_amount=plan.unit_amount,
            currency=plan.currency,
        )
        if change is None:
            change = SeatChange.objects.create(
                organization=organization,
                kind=SeatChange.Kind.PURCHASE,
                idempotency_key=idempotency_key,
                seats=seats,
                quantity_before=0,
                quantity_after=seats,
                plan=plan,
                actor=actor,
            )
        metadata = {
            "purpose": METADATA_PURPOSE,
            "organization_id": str(organization.pk),
            "seat_plan": plan.code,
            "seat_change": idempotency_key,
        }
        gateway_key = f"seats-purchase-{idempotency_key}"

        def checkout() -> PurchaseStarted:
            session = gateway.checkout_subscription(
                customer_id=customer_id,
                price_id=price.id,
                quantity=change.seats,
                metadata=metadata,
                success_url=success_url,
                cancel_url=cancel_url,
                idempotency_key=gateway_key,
            )
            SeatChange.objects.filter(pk=change.pk).update(checkout_session_id=session.id)
            change.refresh_from_db()
            return PurchaseStarted(change=change, checkout_url=session.url)

        if card is None:
            return checkout()
        try:
            subscription = gateway.subscription_create(
                customer_id=customer_id,
                price_id=price.id,
                quantity=change.seats,
                metadata=metadata,
                idempotency_key=gateway_key,
            )
        except CardError as error:
            if error.needs_authentication:
                # The first invoice would wait for the bank, which error_if_incomplete does not
                # allow: the buyer pays on Checkout instead, where the bank asks them at once.
                gateway_key += "-checkout"
                return checkout()
            _change_fail(change, message=error.message, action="seats.purchase_failed")
            raise PaymentFailed(error.message) from error
        seat_subscription_refresh(subscription_id=subscription.id)
        if subscription.latest_invoice:
            seat_invoice_paid(
                invoice=gateway.invoice_retrieve(invoice_id=subscription.latest_invoice)
            )
    change.refresh_from_db()
    return PurchaseStarted(change=change)


def seats_checkout_returned(*, organization: Organization, session_id: str) -> None:
    """The buyer is back from Checkout: mirror the subscription now rather than wait for the
    webhook, so the Seats tab shows the seats at once."""
    session = get_gateway().checkout_session_retrieve(session_id=session_id)
    if session.metadata.get("organization_id") != str(organization.pk) or not session.subscription:
        return
    seats_checkout_card_save(session_id=session.id, status=session.status)
    seat_subscription_refresh(subscription_id=session.subscription)
    if session.invoice:
        seat_invoice_paid(invoice=get_gateway().invoice_retrieve(invoice_id=session.invoice))


def seats_checkout_card_save(*, session_id: str, status: str) -> None:
    """The card a completed seat Checkout collected becomes the customer's default, so that
    renewals, additions and credit purchases charge it (Stripe sets it on the subscription only)."""
    if status == "complete":
        get_gateway().checkout_session_save_card(session_id=session_id)


def seats_restart(*, actor: User, organization: Organization) -> SeatSubscription:
    """The gateway ended the seat subscription at the end of its retries (Stripe's "cancel the
    subscription" setting); paying starts it again: the same seats on the same plan, charged now
    with the saved card, and a new billing date from today. PaymentFailed when declined."""
    gateway = get_gateway()
    with _seat_change_lock(organization.pk):
        row = seat_subscription(organization=organization)
        if row is None or row.is_live or row.on_hold:
            raise SeatError("The seats are running; there is nothing to start again.")
        plan = row.plan
        if plan is None:
            raise SeatError("The seats' plan is unknown; buy seats again on the Seats tab.")
        profile = billing_profile_for(organization=organization)
        customer_id = gateway_customer_ensure(profile)
        price = gateway.price_ensure(
            lookup_key=plan.lookup_key,
            product_name=f"{plan.name} seat",
            unit_amount=row.unit_amount,
            currency=plan.currency,
        )
        # One change per attempt: a retry after a decline (with another card) is a new one.
        prefix = f"restart-{row.gateway_subscription_id}-"
        attempt = SeatChange.objects.filter(
            organization=organization,
            idempotency_key__startswith=prefix,
            status=SeatChange.Status.FAILED,
        ).count()
        key = f"{prefix}{attempt}"
        change, _ = SeatChange.objects.get_or_create(
            idempotency_key=key,
            defaults={
                "organization": organization,
                "kind": SeatChange.Kind.PURCHASE,
                "seats": row.quantity,
                "quantity_before": 0,
                "quantity_after": row.quantity,
                "plan": plan,
                "actor": actor,
            },
        )
        try:
            subscription = gateway.subscription_create(
                customer_id=customer_id,
                price_id=price.id,
                quantity=row.quantity,
                metadata={
                    "purpose": METADATA_PURPOSE,
                    "organization_id": str(organization.pk),
                    "seat_plan": plan.code,
                    "seat_change": key,
                    "restarts": row.gateway_subscription_id,
                },
                idempotency_key=f"seats-{key}",
            )
        except CardError as error:
            _change_fail(change, message=error.message, action="seats.restart_failed")
            raise PaymentFailed(error.message) from error
        refreshed = seat_subscription_refresh(subscription_id=subscription.id)
        if subscription.latest_invoice:
            seat_invoice_paid(
                invoice=gateway.invoice_retrieve(invoice_id=subscription.latest_invoice)
            )
        with transaction.atomic():
            audit_record(
                organization=organization,
                actor=actor,
                action="seats.restart",
                target=_plural(row.quantity),
                ended=row.gateway_subscription_id,
                subscription=subscription.id,
            )
    assert refreshed is not None
    return refreshed


def seat_pending_update_expired(*, subscription_id: str) -> None:
    """A seat addition whose invoice was not paid in time (Stripe's pending update expired, 23
    hours): Stripe voids that invoice itself; it is voided here if it is not yet, so that a late
    payment cannot buy seats that will never apply. The addition ends as expired, and the billing
    contacts are told once."""
    row = seat_subscription_refresh(subscription_id=subscription_id)
    if row is None:
        return
    gateway = get_gateway()
    fetched = gateway.subscription_retrieve(subscription_id=subscription_id)
    if fetched.pending_quantity is not None:
        return  # a newer addition is pending: this event is old news
    waiting = SeatChange.objects.select_related("organization", "actor").filter(
        organization_id=row.organization_id,
        kind=SeatChange.Kind.ADD,
        status__in=[SeatChange.Status.PENDING, SeatChange.Status.FAILED],
        gateway_subscription_id=subscription_id,
    )
    for change in waiting.exclude(gateway_invoice_id=""):
        invoice = gateway.invoice_retrieve(invoice_id=change.gateway_invoice_id)
        if invoice.status == "paid":
            continue  # it was paid in time: invoice.paid records it
        if invoice.status != "void":
            invoice = gateway.invoice_void(invoice_id=invoice.id)
        invoice_fetched.send(sender=SeatChange, invoice=invoice)
        with transaction.atomic():
            expired = SeatChange.objects.filter(
                pk=change.pk, status__in=[SeatChange.Status.PENDING, SeatChange.Status.FAILED]
            ).update(
                status=SeatChange.Status.EXPIRED,
                action_url="",
                failure_message="Not paid within 23 hours: the seats were not added and the "
                "invoice was voided.",
                completed_at=timezone.now(),
            )
            if not expired:
                continue
            organization = change.organization
            audit_record(
                organization=organization,
                actor=None,
                action="seats.add_expired",
                target=_plural(change.seats),
                invoice=invoice.number or invoice.id,
            )
            _email(
                organization,
                f"Seats not added to {organization.name}: the payment did not go through",
                "emails/seats_add_expired.txt",
                {"change": change, "invoice": invoice, "subscription": row},
            )


def seats_checkout_expired(*, session_id: str) -> None:
    SeatChange.objects.filter(
        checkout_session_id=session_id, status=SeatChange.Status.PENDING
    ).update(
        status=SeatChange.Status.FAILED,
        failure_message="The payment page expired before it was paid.",
        completed_at=timezone.now(),
    )


# Addition


@dataclass(frozen=True)
class PreviewTerms:
    """What the confirmed preview rested on, posted back from the confirmation page."""

    proration_date: datetime
    period_end: datetime
    unit_amount: int


def _stale(current: Subscription, terms: PreviewTerms) -> bool:
    now = billing_now()
    return (
        current.unit_amount != terms.unit_amount
        or current.current_period_end != terms.period_end
        or not current.current_period_start <= terms.proration_date <= now
        or now - terms.proration_date > PREVIEW_VALID_FOR
    )


def seats_add(
    *,
    actor: User,
    organization: Organization,
    seats: int,
    idempotency_key: str,
    terms: PreviewTerms,
) -> SeatChange:
    """Add seats now, charged at once pro rata for the rest of the period (from the preview's
    moment, so the charge is the one shown); they appear only when that invoice is paid, and the
    billing date does not change. A stale preview is refused with the new one (StalePreview)."""
    _check_count(seats)
    gateway = get_gateway()
    with _seat_change_lock(organization.pk):
        change = _change_for_key(organization, idempotency_key, SeatChange.Kind.ADD)
        if change is not None and change.status != SeatChange.Status.PENDING:
            return change
        if change is not None and change.action_url:
            raise AuthenticationRequired(action_url=change.action_url)
        row = live_seat_subscription(organization=organization)
        current = gateway.subscription_retrieve(subscription_id=row.gateway_subscription_id)
        if change is None:
            if current.status not in SeatSubscription.LIVE_STATUSES:
                raise NoSeatSubscription
            if current.pending_quantity is not None:
                raise SeatError(
                    f"{_plural(current.pending_quantity - current.quantity)} added earlier are "
                    "waiting for their invoice to be paid: pay it on the Invoices tab, or wait "
                    "until it lapses (within a day), then add seats again."
                )
            if _stale(current, terms):
                raise StalePreview(
                    preview=seat_addition_preview(organization=organization, seats=seats)
                )
            if current.quantity + seats > MAX_SEATS:
                raise SeatError(f"A subscription holds at most {MAX_SEATS:,} seats.")
            # The new quantity comes from the gateway's current one, read under the lock: a
            # concurrent addition has either finished (and is counted) or waits for this one.
            change = SeatChange.objects.create(
                organization=organization,
                kind=SeatChange.Kind.ADD,
                idempotency_key=idempotency_key,
                seats=seats,
                quantity_before=current.quantity,
                quantity_after=current.quantity + seats,
                plan=row.plan,
                gateway_subscription_id=current.id,
                proration_date=terms.proration_date,
                actor=actor,
            )
        assert change.quantity_after is not None
        try:
            result = gateway.subscription_change_quantity(
                subscription_id=current.id,
                quantity=change.quantity_after,
                proration_date=change.proration_date,
                idempotency_key=f"seats-add-{idempotency_key}",
            )
        except CardError as error:
            if error.needs_authentication and error.action_url:
                # Not declined: the pending update applies when the payer authenticates.
                SeatChange.objects.filter(pk=change.pk, status=SeatChange.Status.PENDING).update(
                    action_url=error.action_url[:1000],
                    gateway_invoice_id=error.invoice_id or change.gateway_invoice_id,
                )
                seat_subscription_refresh(subscription_id=current.id)
                raise AuthenticationRequired(action_url=error.action_url) from error
            _change_fail(
                change,
                message=error.message,
                action="seats.add_failed",
                invoice_id=error.invoice_id,
            )
            seat_subscription_refresh(subscription_id=current.id)
            raise PaymentFailed(error.message, invoice_id=error.invoice_id) from error
        seat_subscription_refresh(subscription_id=current.id)
        if result.invoice is not None:
            SeatChange.objects.filter(pk=change.pk, gateway_invoice_id="").update(
                gateway_invoice_id=result.invoice.id
            )
            seat_invoice_paid(invoice=result.invoice)
    change.refresh_from_db()
    return change


# Removal


def _release(row_pk: int, seats: int) -> SeatSubscription:
    """Give back seats held for a removal (inside the caller's transaction); the locked row."""
    with lock_wait_bounded(SeatChangeBusy):
        row = SeatSubscription.objects.select_for_update().get(pk=row_pk)
    row.removing = max(row.removing - seats, 0)
    row.save(update_fields=["removing"])
    return row


def seats_remove(
    *, actor: User, organization: Organization, seats: int, idempotency_key: str
) -> SeatChange:
    """Remove empty seats: the quantity drops now, with no proration, refund or credit; the next
    invoice is for fewer seats and the billing date does not change. Seats that someone holds (a
    member or a pending invitation) cannot be removed (SeatsInUse)."""
    _check_count(seats)
    gateway = get_gateway()
    with _seat_change_lock(organization.pk):
        change = _change_for_key(organization, idempotency_key, SeatChange.Kind.REMOVE)
        if change is not None and change.status != SeatChange.Status.PENDING:
            return change
        row = live_seat_subscription(organization=organization)
        if change is None:
            current = gateway.subscription_retrieve(subscription_id=row.gateway_subscription_id)
            if current.pending_quantity is not None:
                raise SeatError(
                    "Seats added earlier are waiting for their invoice to be paid; pay it on the "
                    "Invoices tab or wait until it lapses, then remove seats."
                )
            change = _removal_reserve(
                actor=actor,
                organization=organization,
                row=row,
                current=current,
                seats=seats,
                idempotency_key=idempotency_key,
            )
        assert change.quantity_after is not None
        try:
            result = gateway.subscription_change_quantity(
                subscription_id=row.gateway_subscription_id,
                quantity=change.quantity_after,
                proration_date=None,
                idempotency_key=f"seats-remove-{idempotency_key}",
            )
            fetched = result.subscription
        except GatewayError as error:
            # The request may have reached the gateway all the same: its state decides.
            fetched = gateway.subscription_retrieve(subscription_id=row.gateway_subscription_id)
            if fetched.quantity != change.quantity_after:
                with transaction.atomic():
                    _release(row.pk, change.seats)
                _change_fail(change, message=str(error), action="seats.remove_failed")
                seat_subscription_refresh(subscription_id=row.gateway_subscription_id)
                raise SeatError(
                    f"The payment provider did not take the change ({error}); nothing changed."
                ) from error
        with transaction.atomic():
            locked = _release(row.pk, change.seats)
            _apply(locked, fetched)
            locked.save()
            if _change_claim(change):
                audit_record(
                    organization=organization,
                    actor=change.actor,
                    action="seats.remove",
                    target=_plural(change.seats),
                    quantity_before=change.quantity_before,
                    quantity=change.quantity_after,
                )
                _email(
                    organization,
                    f"Seats removed from {organization.name}: now {_plural(locked.quantity)}",
                    "emails/seats_remove.txt",
                    {"change": change, "subscription": locked, "actor": change.actor},
                )
    change.refresh_from_db()
    return change


def _removal_reserve(
    *,
    actor: User,
    organization: Organization,
    row: SeatSubscription,
    current: Subscription,
    seats: int,
    idempotency_key: str,
) -> SeatChange:
    """Check that `seats` are empty and hold them back, under the row lock that invitations and
    acceptances take too: from this commit on, nobody can take them."""
    with transaction.atomic(durable=True), lock_wait_bounded(SeatChangeBusy):
        locked = SeatSubscription.objects.select_for_update().get(pk=row.pk)
        _apply(locked, current)
        occupied = occupied_seat_count(organization_id=organization.pk)
        empty = locked.seats - occupied
        if seats > empty:
            raise SeatsInUse(
                asked=seats,
                empty=max(empty, 0),
                holders=seat_occupancy(organization=organization).holders,
            )
        if current.quantity - seats < 1:
            raise SeatError(
                "A subscription keeps at least one seat; to stop paying for seats, cancel it."
            )
        locked.removing += seats
        locked.save()
        return SeatChange.objects.create(
            organization=organization,
            kind=SeatChange.Kind.REMOVE,
            idempotency_key=idempotency_key,
            seats=seats,
            quantity_before=current.quantity,
            quantity_after=current.quantity - seats,
            plan=locked.plan,
            gateway_subscription_id=current.id,
            actor=actor,
        )


# Cancel and resume


def seats_cancel(*, actor: User, organization: Organization) -> SeatSubscription:
    """Cancel at the end of the period: the seats stay until then and no invoice follows; then
    they drop to 0 and nobody spends the organization's credits until seats are bought again."""
    return _set_cancel(actor=actor, organization=organization, cancel=True)


def seats_end_with_organization(*, actor: User | None, organization: Organization) -> None:
    """An organization that is deleted (by its owner, or by the retention purge) is charged no
    more: its seats end with the period already paid. Call it outside any transaction."""
    subscription = seat_subscription(organization=organization)
    if subscription is None or subscription.cancel_at_period_end:
        return
    if subscription.is_live or subscription.on_hold:
        _set_cancel(actor=actor, organization=organization, cancel=True)


def seats_resume(*, actor: User, organization: Organization) -> SeatSubscription:
    """Undo a cancellation before the period ends: renewals continue on the same date."""
    return _set_cancel(actor=actor, organization=organization, cancel=False)


def _set_cancel(
    *, actor: User | None, organization: Organization, cancel: bool
) -> SeatSubscription:
    gateway = get_gateway()
    with _seat_change_lock(organization.pk):
        row = seat_subscription(organization=organization)
        # Seats on hold can still be cancelled (no further drafts after the period), not resumed.
        if row is None or not (row.is_live or (cancel and row.on_hold)):
            raise NoSeatSubscription
        if row.cancel_at_period_end == cancel:
            return row
        if cancel:
            gateway.subscription_cancel_at_period_end(subscription_id=row.gateway_subscription_id)
        else:
            gateway.subscription_resume(subscription_id=row.gateway_subscription_id)
        refreshed = seat_subscription_refresh(subscription_id=row.gateway_subscription_id)
        assert refreshed is not None
        end = refreshed.current_period_end
        if cancel:
            subject = f"Seats of {organization.name} end on {end.day} {end:%b %Y}"
        else:
            subject = (
                f"Seats of {organization.name} continue; next invoice on {end.day} {end:%b %Y}"
            )
        with transaction.atomic():
            audit_record(
                organization=organization,
                actor=actor,
                action="seats.cancel" if cancel else "seats.resume",
                target=_plural(refreshed.quantity),
                period_end=end.isoformat(),
            )
            _email(
                organization,
                subject,
                "emails/seats_cancel.txt" if cancel else "emails/seats_resume.txt",
                {"subscription": refreshed, "actor": actor},
            )
    return refreshed


# Reconciliation


def seat_subscriptions_resync() -> int:
    """Re-fetch every seat subscription from the gateway, settle removals that a crash left
    half-done (their held-back seats are released by what the gateway says) and end the seats of
    closed organizations that are still renewing."""
    stale = timezone.now() - timedelta(minutes=10)
    for change in SeatChange.objects.filter(
        kind=SeatChange.Kind.REMOVE, status=SeatChange.Status.PENDING, created_at__lt=stale
    ).select_related("organization", "actor"):
        fetched = get_gateway().subscription_retrieve(
            subscription_id=change.gateway_subscription_id
        )
        row = SeatSubscription.objects.filter(organization=change.organization).first()
        with transaction.atomic():
            if row is not None:
                _release(row.pk, change.seats)
            if fetched.quantity == change.quantity_after:
                _change_claim(change)
            else:
                _change_fail(
                    change,
                    message="Interrupted before the gateway took it.",
                    action="seats.remove_failed",
                )
    # An addition still pending after an hour was interrupted before the gateway answered and no
    # paid invoice claimed it since; a late invoice.paid still records its receipt.
    for change in (
        SeatChange.objects.filter(
            kind=SeatChange.Kind.ADD,
            status=SeatChange.Status.PENDING,
            created_at__lt=timezone.now() - IN_FLIGHT,
        )
        .filter(action_url="")  # those wait for the bank, until paid or expired
        .select_related("organization", "actor")
    ):
        _change_fail(
            change,
            message="Interrupted before the payment provider answered.",
            action="seats.add_failed",
        )
    # A closed organization whose seats could not be ended at the gateway then (dunning.closing).
    for row in SeatSubscription.objects.filter(
        organization__billing_state=Organization.BillingState.DELETED, cancel_at_period_end=False
    ).select_related("organization"):
        if row.is_live or row.on_hold:
            seats_end_with_organization(actor=None, organization=row.organization)
    count = 0
    for subscription_id in SeatSubscription.objects.filter(
        Q(ended_at__isnull=True) | Q(ended_at__gte=timezone.now() - timedelta(days=7))
    ).values_list("gateway_subscription_id", flat=True):
        try:
            seat_subscription_refresh(subscription_id=subscription_id)
        except GatewayError:
            logger.exception("could not resync seat subscription %s", subscription_id)
            continue
        count += 1
    return count
