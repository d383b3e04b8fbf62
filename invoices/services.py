"""The local copy of every gateway invoice, "pay now" and the next renewal. Who pays (billing
profiles, customers, billing details) is `billing`'s; the failed-payment lifecycle `dunning`'s."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, transaction
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from billing.models import BillingProfile
from billing.notify import email_billing_contacts
from billing.templatetags.money import cents
from invoices import selectors
from invoices.exceptions import NothingToPay, PayNowBusy
from invoices.models import Invoice
from invoices.signals import invoice_changed
from organizations.exceptions import RowBusy
from organizations.locks import lock_wait_bounded
from organizations.models import Organization
from organizations.services import audit_record
from payments import gateway
from payments.factory import get_gateway
from payments.gateway import CardError, GatewayError
from seats import selectors as seat_selectors
from seats.exceptions import PaymentFailed as SeatPaymentFailed
from seats.models import SeatSubscription
from seats.services import seat_subscription_refresh, seats_restart

logger = logging.getLogger(__name__)


# Invoices: the local copy

# How far an invoice has come. Stripe moves an invoice only forward (draft → open → paid, void or
# uncollectible; uncollectible → paid or void) and never lowers its attempt count or amount paid,
# so (rank, attempts, amount paid, time observed) orders any two snapshots of one invoice.
_STATUS_RANK = {"draft": 0, "open": 1, "uncollectible": 2, "void": 3, "paid": 3}


def invoice_kind(invoice: gateway.Invoice) -> str:
    """What the invoice was for. Subscription invoices carry the subscription's metadata, so
    their billing reason decides before any `kind` in the metadata does."""
    if invoice.billing_reason == "subscription_update":
        return Invoice.Kind.SEAT_PRORATION
    if invoice.billing_reason in ("subscription_create", "subscription_cycle"):
        return Invoice.Kind.SEAT_SUBSCRIPTION
    kind = invoice.metadata.get("kind", "")
    if kind in (Invoice.Kind.CREDIT_PURCHASE, Invoice.Kind.AUTO_TOPUP, Invoice.Kind.SEAT_REPAYMENT):
        return kind
    if invoice.subscription:
        return Invoice.Kind.SEAT_SUBSCRIPTION
    return Invoice.Kind.OTHER


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _fields(invoice: gateway.Invoice, observed_at: datetime) -> dict[str, Any]:
    starts = [line.period_start for line in invoice.lines if line.period_start]
    ends = [line.period_end for line in invoice.lines if line.period_end]
    return {
        "number": invoice.number,
        "kind": invoice_kind(invoice),
        "status": invoice.status if invoice.status in Invoice.Status.values else "open",
        "billing_reason": invoice.billing_reason,
        "currency": invoice.currency,
        "amount_due": invoice.amount_due,
        "amount_paid": invoice.amount_paid,
        "amount_remaining": invoice.amount_remaining,
        "attempt_count": invoice.attempt_count,
        "next_payment_attempt": invoice.next_payment_attempt,
        # The service period comes from the lines; a subscription invoice's own period_* is the
        # (empty) window of pending items.
        "period_start": min(starts) if starts else invoice.period_start,
        "period_end": max(ends) if ends else invoice.period_end,
        "paid_at": invoice.paid_at,
        "hosted_invoice_url": invoice.hosted_invoice_url,
        "invoice_pdf": invoice.invoice_pdf,
        "gateway_subscription_id": invoice.subscription,
        "auto_advance": invoice.auto_advance,
        "finalization_error_code": invoice.finalization_error_code,
        "finalization_error": invoice.finalization_error,
        "metadata": invoice.metadata,
        "lines": [
            {
                "description": line.description,
                "amount": line.amount,
                "quantity": line.quantity,
                "proration": line.proration,
                "period_start": _iso(line.period_start),
                "period_end": _iso(line.period_end),
            }
            for line in invoice.lines
        ],
        "created": invoice.created,
        "observed_at": observed_at,
        "synced_at": timezone.now(),
    }


def _version(status: str, attempts: int, paid: int, observed_at: datetime) -> tuple[Any, ...]:
    return (_STATUS_RANK.get(status, 1), attempts, paid, observed_at)


def _new_failed_attempt(invoice: gateway.Invoice, *, known_attempts: int) -> bool:
    unpaid = invoice.status in (Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE)
    return (
        unpaid
        and invoice.attempt_count > known_attempts
        and invoice_kind(invoice) in selectors.LIFECYCLE_KINDS
    )


def _last_attempt(invoice: gateway.Invoice) -> gateway.PaymentAttempt | None:
    """How a seat invoice's new failed attempt ended, read from the gateway (its PaymentIntent)
    before any row is locked: whether it was a hard decline, or the bank asking the payer to
    authenticate, decides what the lifecycle does. None when nothing new failed."""
    known = Invoice.objects.filter(gateway_id=invoice.id).values_list("attempt_count", flat=True)
    if not _new_failed_attempt(invoice, known_attempts=known.first() or 0):
        return None
    try:
        return get_gateway().invoice_last_payment(invoice_id=invoice.id)
    except GatewayError:
        logger.warning("could not read the last payment of %s", invoice.id, exc_info=True)
        return None


def _failure_fields(
    local: Invoice | None,
    invoice: gateway.Invoice,
    observed_at: datetime,
    attempt: gateway.PaymentAttempt | None,
) -> dict[str, Any]:
    """When the invoice first failed, and how its last attempt ended (`attempt`, read before the
    locks; used only if the attempt is still new once the invoice is locked)."""
    unpaid = invoice.status in (Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE)
    if _held_draft(invoice):
        # Never charged by the gateway by itself: overdue from when it was first seen so.
        if not (local and local.first_failed_at):
            return {"first_failed_at": observed_at, "awaiting_authentication": False}
        return {"awaiting_authentication": False}
    if not unpaid:
        return {"awaiting_authentication": False}
    fields: dict[str, Any] = {}
    known_attempts = local.attempt_count if local else 0
    if invoice.attempt_count and not (local and local.first_failed_at):
        fields["first_failed_at"] = observed_at
    if attempt is not None and _new_failed_attempt(invoice, known_attempts=known_attempts):
        fields.update(
            payment_error_code=attempt.code[:60],
            payment_decline_code=attempt.decline_code[:60],
            awaiting_authentication=attempt.needs_authentication,
        )
    return fields


def _held_draft(invoice: gateway.Invoice) -> bool:
    """A seat draft the gateway will not finalize and charge by itself (see
    selectors.OVERDUE_DRAFT). One-off drafts (Stripe makes them with auto_advance off and
    finalizes them in the same request) are not owed as drafts."""
    return (
        invoice.status == Invoice.Status.DRAFT
        and invoice_kind(invoice) in selectors.LIFECYCLE_KINDS
        and (not invoice.auto_advance or bool(invoice.finalization_error_code))
    )


def _profile_of(invoice: gateway.Invoice) -> BillingProfile | None:
    """Whose invoice it is: the profile of its customer, else (a customer forgotten since, after
    it was deleted at the gateway) the profile its local copy already belongs to."""
    profiles = BillingProfile.objects.select_related("organization")
    if invoice.customer and (
        profile := profiles.filter(gateway_customer_id=invoice.customer).first()
    ):
        return profile
    return profiles.filter(invoices__gateway_id=invoice.id).first()


def invoice_sync(
    *, invoice: gateway.Invoice, observed_at: datetime | None = None
) -> Invoice | None:
    """Create or update the local copy of a gateway invoice and tell what changed
    (`invoice_changed`: the lifecycle reacts). A snapshot older than the stored one (a late
    event) changes nothing. `observed_at` is the event's `created`; a record just fetched from the
    gateway is observed now. Returns None for a customer no billing profile knows.

    How a new failed attempt ended is read from the gateway first, with no transaction open;
    then the copy is written in one short transaction that re-checks, under the locks, that the
    attempt is still new."""
    attempt = _last_attempt(invoice)
    return _invoice_store(
        invoice=invoice, observed_at=observed_at or timezone.now(), attempt=attempt
    )


def _busy() -> RowBusy:
    return RowBusy("This invoice is being updated by another request; try again in a moment.")


# Durable: invoice_sync reads the gateway before it, so it is never called inside a transaction.
@transaction.atomic(durable=True)
@lock_wait_bounded(_busy)
def _invoice_store(
    *, invoice: gateway.Invoice, observed_at: datetime, attempt: gateway.PaymentAttempt | None
) -> Invoice | None:
    profile = _profile_of(invoice)
    if profile is None:
        logger.warning(
            "invoice %s: no billing profile for customer %r", invoice.id, invoice.customer
        )
        return None
    if profile.organization_id:
        # Lock order organization → invoice, as the seat handlers lock the organization first:
        # two events of one invoice processed at once then wait for each other, never deadlock.
        list(
            Organization.objects.select_for_update()
            .filter(pk=profile.organization_id)
            .values_list("pk", flat=True)
        )
    fields = _fields(invoice, observed_at)
    local = Invoice.objects.select_for_update().filter(gateway_id=invoice.id).first()
    if local is None:
        try:
            with transaction.atomic():
                local = Invoice.objects.create(
                    gateway_id=invoice.id,
                    billing_profile=profile,
                    **fields,
                    **_failure_fields(None, invoice, observed_at, attempt),
                )
        except IntegrityError:  # another worker stored it first: compare with theirs
            local = Invoice.objects.select_for_update().get(gateway_id=invoice.id)
        else:
            _repayment_settle(local)
            invoice_changed.send(
                sender=Invoice,
                invoice=local,
                previous_status="",
                previous_attempts=0,
                previous_finalization_error="",
            )
            return local
    incoming = _version(fields["status"], invoice.attempt_count, invoice.amount_paid, observed_at)
    stored = _version(local.status, local.attempt_count, local.amount_paid, local.observed_at)
    if incoming < stored:
        return local
    previous_status, previous_attempts = local.status, local.attempt_count
    previous_error = (local.payment_error_code, local.payment_decline_code)
    previous_finalization_error = local.finalization_error_code
    fields.update(_failure_fields(local, invoice, observed_at, attempt))
    for name, value in fields.items():
        setattr(local, name, value)
    local.save()
    _repayment_settle(local)
    invoice_changed.send(
        sender=Invoice,
        invoice=local,
        previous_status=previous_status,
        previous_attempts=previous_attempts,
        previous_error=previous_error,
        previous_finalization_error=previous_finalization_error,
    )
    return local


def _repayment_settle(repayment: Invoice) -> None:
    """A paid repayment settles the charged-back invoice it repays (inside invoice_sync)."""
    repays = repayment.metadata.get("repays", "")
    if repayment.kind != Invoice.Kind.SEAT_REPAYMENT or repayment.status != "paid" or not repays:
        return
    original = (
        Invoice.objects.select_for_update()
        .filter(
            gateway_id=repays,
            billing_profile_id=repayment.billing_profile_id,
            dispute_repaid_at__isnull=True,
        )
        .first()
    )
    if original is None:
        return
    original.dispute_repaid_at = repayment.paid_at or timezone.now()
    original.save(update_fields=["dispute_repaid_at"])
    invoice_changed.send(
        sender=Invoice,
        invoice=original,
        previous_status=original.status,
        previous_attempts=original.attempt_count,
        repaid=True,
    )


# Money that went back to the card: refunds and disputes of an invoice's payment


@transaction.atomic
@lock_wait_bounded(_busy)
def invoice_reversals_sync(
    *, gateway_invoice_id: str, refunds: list[gateway.Refund], dispute: gateway.Dispute | None
) -> Invoice | None:
    """Show on the local invoice what went back to the card (the refunds' total, the dispute's
    state), tell the billing contacts about a seat invoice's refund or dispute once, and let the
    lifecycle react: a lost dispute leaves the invoice owed again."""
    local = (
        Invoice.objects.select_for_update(of=("self",))
        .select_related("billing_profile__organization")
        .filter(gateway_id=gateway_invoice_id)
        .first()
    )
    if local is None:
        return None
    previous_refunded, previous_dispute = local.amount_refunded, local.dispute_status
    refunded = sum(refund.amount for refund in refunds if refund.takes_money_back)
    local.amount_refunded = max(refunded, 0)
    if dispute is not None:
        local.dispute_status, local.dispute_amount = dispute.status, dispute.amount
    if (local.amount_refunded, local.dispute_status) == (previous_refunded, previous_dispute):
        return local
    local.save(update_fields=["amount_refunded", "dispute_status", "dispute_amount"])
    organization = local.billing_profile.organization
    # Credit purchases are told about by the credits they take back (credits.services).
    if organization is not None and local.kind in selectors.LIFECYCLE_KINDS:
        audit_record(
            organization=organization,
            actor=None,
            action="invoice.reversal",
            target=local.display_number,
            amount_refunded=local.amount_refunded,
            dispute_status=local.dispute_status,
        )
        email_billing_contacts(
            organization=organization,
            subject=f"Invoice {local.display_number}: "
            + (
                f"dispute {local.dispute_label}"
                if local.dispute_status != previous_dispute
                else f"{cents(local.amount_refunded - previous_refunded)} refunded"
            ),
            template="emails/invoice_reversal.txt",
            context={
                "invoice": local,
                "refunded_now": local.amount_refunded - previous_refunded,
                "dispute_changed": local.dispute_status != previous_dispute,
                "invoices_url": settings.SITE_URL
                + reverse("org_invoice", args=[organization.pk, local.pk]),
            },
        )
    invoice_changed.send(
        sender=Invoice,
        invoice=local,
        previous_status=local.status,
        previous_attempts=local.attempt_count,
        previous_dispute_status=previous_dispute,
    )
    return local


def invoices_resync(*, profile: BillingProfile) -> int:
    """Fetch the profile's invoices from the gateway and sync each (staff action, and a repair
    for missed events). Returns how many it saw."""
    if not profile.gateway_customer_id:
        return 0
    invoices = get_gateway().invoice_list(customer_id=profile.gateway_customer_id)
    for invoice in invoices:
        invoice_sync(invoice=invoice)
    return len(invoices)


# Pay now


@dataclass
class PayNowResult:
    paid: list[Invoice] = field(default_factory=list)
    failure: CardError | None = None
    restored: bool = False
    # The bank wants the payer to confirm the payment: where (the payer goes there next).
    action_url: str = ""
    restarted: SeatSubscription | None = None
    # An overdue draft the gateway could not finalize (so nothing could be charged for it): why,
    # in words fit for the payer.
    problem: str = ""

    @property
    def amount_paid(self) -> int:
        return sum(invoice.amount_paid for invoice in self.paid)

    @property
    def stopped(self) -> bool:
        return self.failure is not None or bool(self.action_url) or bool(self.problem)

    def stop(self, error: CardError) -> None:
        """A decline, or the bank asking the payer to authenticate: nothing more is charged."""
        if error.needs_authentication and error.action_url:
            self.action_url = error.action_url
        else:
            self.failure = error


def _finalize(invoice: Invoice, result: PayNowResult) -> bool:
    """Finalize an overdue draft so that it can be paid (a renewal Stripe left as a draft while
    the subscription was unpaid: paying the most recent one is what makes the subscription
    active again). False, with `result.problem` said, when the gateway refuses."""
    try:
        finalized = get_gateway().invoice_finalize(invoice_id=invoice.gateway_id)
    except GatewayError as error:
        _refetch(invoice.gateway_id)
        invoice.refresh_from_db()
        reason = invoice.finalization_reason if invoice.not_finalized else str(error)
        result.problem = f"Invoice {invoice.display_number} could not be issued: {reason}."
        return False
    invoice_sync(invoice=finalized)
    return True


def _pay_overdue(plan: "PayNowPlan", result: PayNowResult, *, return_url: str) -> None:
    for invoice in plan.to_pay:
        if invoice.status == Invoice.Status.DRAFT and not _finalize(invoice, result):
            return
        try:
            paid = get_gateway().invoice_pay(
                invoice_id=invoice.gateway_id,
                idempotency_key=f"pay-now-{invoice.gateway_id}-{invoice.attempt_count}",
                off_session=False,
                return_url=return_url,
            )
        except CardError as error:
            _refetch(invoice.gateway_id)
            result.stop(error)
            return
        except GatewayError:
            # Paid or voided elsewhere meanwhile: the gateway's copy says which.
            _refetch(invoice.gateway_id)
            continue
        synced = invoice_sync(invoice=paid)
        if synced is not None:
            result.paid.append(synced)


def _repay_each(plan: "PayNowPlan", *, return_url: str) -> list[Invoice] | CardError:
    repaid = []
    for invoice in plan.to_repay:
        outcome = _repay(invoice, return_url=return_url)
        if isinstance(outcome, CardError):
            return outcome
        repaid.append(outcome)
    return repaid


def _refetch(gateway_id: str) -> None:
    try:
        invoice_sync(invoice=get_gateway().invoice_retrieve(invoice_id=gateway_id))
    except GatewayError:
        logger.warning("could not refetch invoice %s", gateway_id, exc_info=True)


@dataclass(frozen=True)
class PayNowPlan:
    """What "pay now" will do: pay the overdue invoices, repay the charged-back ones, or (when
    the gateway ended the seat subscription after its retries) start the seats again."""

    to_pay: list[Invoice]
    to_repay: list[Invoice]
    to_void: list[Invoice]  # the ended subscription's invoices, replaced by the restart
    restart: SeatSubscription | None  # the ended subscription, started again with its seats
    restart_amount: int  # cents charged now for the restarted seats

    @property
    def total(self) -> int:
        return (
            sum(invoice.amount_remaining for invoice in self.to_pay)
            + sum(invoice.dispute_amount for invoice in self.to_repay)
            + self.restart_amount
        )


def pay_now_plan(*, organization: Organization) -> PayNowPlan:
    overdue = list(selectors.overdue_invoices(organization=organization))
    to_repay = [invoice for invoice in overdue if invoice.charged_back]
    unpaid = [invoice for invoice in overdue if not invoice.charged_back]
    ended = seat_selectors.seat_subscription(organization=organization)
    # Stripe ended the subscription at the end of its retries ("cancel the subscription"):
    # paying its invoice would not bring the seats back, a new subscription does.
    restart = None
    if (
        ended is not None
        and ended.has_ended
        and ended.quantity
        and any(
            invoice.gateway_subscription_id == ended.gateway_subscription_id for invoice in unpaid
        )
    ):
        restart = ended
    to_void = [
        invoice
        for invoice in unpaid
        if restart is not None
        and invoice.gateway_subscription_id == restart.gateway_subscription_id
    ]
    return PayNowPlan(
        to_pay=[invoice for invoice in unpaid if invoice not in to_void],
        to_repay=to_repay,
        to_void=to_void,
        restart=restart,
        restart_amount=restart.quantity * restart.unit_amount if restart else 0,
    )


def _repay(invoice: Invoice, *, return_url: str) -> Invoice | CardError:
    """Charge again what a lost dispute took back, as a one-off invoice that repays it."""
    profile = invoice.billing_profile
    attempt = Invoice.objects.filter(
        billing_profile=profile,
        kind=Invoice.Kind.SEAT_REPAYMENT,
        metadata__repays=invoice.gateway_id,
    ).count()
    charge = get_gateway().charge(
        customer_id=profile.gateway_customer_id,
        amount=invoice.dispute_amount,
        currency=invoice.currency,
        description=f"Repayment of invoice {invoice.display_number} (charged back)",
        metadata={"kind": Invoice.Kind.SEAT_REPAYMENT, "repays": invoice.gateway_id},
        idempotency_key=f"repay-{invoice.gateway_id}-{attempt}",
        return_url=return_url,
    )
    synced = invoice_sync(invoice=charge.invoice)
    if charge.paid and synced is not None:
        return synced
    assert charge.failure is not None
    if not charge.failure.needs_authentication:
        try:
            invoice_sync(invoice=get_gateway().invoice_void(invoice_id=charge.invoice.id))
        except GatewayError:
            logger.warning("could not void repayment %s", charge.invoice.id, exc_info=True)
    return charge.failure


def invoices_pay_now(
    *, actor: User, organization: Organization, return_url: str = ""
) -> PayNowResult:
    """Charge the saved card for every overdue seat invoice, oldest first, and sync each answer;
    the sync restores the organization the moment nothing is overdue, within this request. A
    charged-back invoice is repaid by a new one; seats the gateway ended after its retries start
    again (same quantity, billing date from today) and that subscription's unpaid invoices are
    voided. Drafts the gateway holds (the renewals of an unpaid subscription, the most recent
    among them) are finalized first and paid like the others: paying the most recent invoice is
    what makes the gateway's subscription active again. Stops at the first decline, at a draft
    that cannot be finalized (`problem`), or where the bank wants the payer to authenticate
    (`action_url`, which leads back to `return_url`). The idempotency key includes the attempt
    count, so a double click pays once and a retry after a new card is a new attempt."""
    with _pay_now_lock(organization.pk):
        return _pay_now(actor=actor, organization=organization, return_url=return_url)


# A session-level advisory lock per organization, taken in a short transaction and held across
# the gateway calls (never inside a transaction): two clicks on "pay now" must not both plan to
# pay the same invoices, since the second would get the gateway's replay of the first payment
# (the same idempotency key) and count it as its own.
_PAY_NOW_LOCK_NAMESPACE = 0x9A7
PAY_NOW_LOCK_WAIT = timedelta(seconds=10)


@contextmanager
def _pay_now_lock(organization_id: UUID) -> Iterator[None]:
    key = int.from_bytes(organization_id.bytes[:4], "big", signed=True)
    wait_ms = int(PAY_NOW_LOCK_WAIT.total_seconds() * 1000)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{wait_ms}ms"])
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [_PAY_NOW_LOCK_NAMESPACE, key])
    except OperationalError as timed_out:
        raise PayNowBusy from timed_out
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_PAY_NOW_LOCK_NAMESPACE, key])


def _seats_refresh(organization: Organization, result: PayNowResult) -> None:
    """Seats on hold come back in this request, not when the webhook arrives: paying the most
    recent invoice made the gateway's subscription active again."""
    row = seat_selectors.seat_subscription(organization=organization)
    if row is None or not row.on_hold:
        return
    if any(
        invoice.gateway_subscription_id == row.gateway_subscription_id for invoice in result.paid
    ):
        try:
            seat_subscription_refresh(subscription_id=row.gateway_subscription_id)
        except GatewayError:
            logger.warning("could not refresh %s", row.gateway_subscription_id, exc_info=True)


def _pay_now(*, actor: User, organization: Organization, return_url: str) -> PayNowResult:
    plan = pay_now_plan(organization=organization)
    if not plan.to_pay and not plan.to_repay and plan.restart is None:
        raise NothingToPay
    organization.refresh_from_db()
    was = organization.billing_state
    result = PayNowResult()
    _pay_overdue(plan, result, return_url=return_url)
    if not result.stopped:
        repaid = _repay_each(plan, return_url=return_url)
        if isinstance(repaid, CardError):
            result.stop(repaid)
        else:
            result.paid += repaid
    if not result.stopped and plan.restart is not None:
        try:
            result.restarted = seats_restart(actor=actor, organization=organization)
        except SeatPaymentFailed as failed:
            result.stop(CardError(failed.message))
        else:
            for invoice in plan.to_void:
                try:
                    invoice_sync(invoice=get_gateway().invoice_void(invoice_id=invoice.gateway_id))
                except GatewayError:
                    logger.warning("could not void %s", invoice.gateway_id, exc_info=True)
    _seats_refresh(organization, result)
    organization.refresh_from_db()
    result.restored = was != organization.billing_state == Organization.BillingState.ACTIVE
    if not (
        result.paid or result.failure or result.action_url or result.restarted or result.problem
    ):
        return result  # a second click that found its invoices paid by the first: nothing done
    with transaction.atomic():
        audit_record(
            organization=organization,
            actor=actor,
            action="billing.pay_now",
            target=", ".join(invoice.number for invoice in result.paid),
            amount_paid=result.amount_paid,
            failure=result.failure.message if result.failure else result.problem,
            authentication=bool(result.action_url),
            restarted=result.restarted.gateway_subscription_id if result.restarted else "",
        )
    return result


# Reads from the gateway (never inside a transaction)


@dataclass(frozen=True)
class Renewal:
    at: datetime
    amount: int
    quantity: int


def upcoming_renewal(*, organization: Organization) -> Renewal | None:
    """When the seat subscription charges next, and how much, as the gateway says."""
    latest = (
        selectors.invoices_of_organization(organization=organization)
        .filter(kind=Invoice.Kind.SEAT_SUBSCRIPTION)
        .exclude(gateway_subscription_id="")
        .first()
    )
    if latest is None:
        return None
    subscription = get_gateway().subscription_retrieve(
        subscription_id=latest.gateway_subscription_id
    )
    if subscription.status == "canceled" or subscription.cancel_at_period_end:
        return None
    return Renewal(
        at=subscription.current_period_end,
        amount=subscription.unit_amount * subscription.quantity,
        quantity=subscription.quantity,
    )
