"""The local copy of every gateway invoice, "pay now" and the next renewal. Who pays (billing
profiles, customers, billing details) is `billing`'s; the failed-payment lifecycle `dunning`'s."""

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from billing.models import BillingProfile
from invoices import selectors
from invoices.exceptions import NothingToPay
from invoices.models import Invoice
from invoices.signals import invoice_changed
from organizations.models import Organization
from organizations.services import audit_record
from payments import gateway
from payments.gateway import CardError, GatewayError, get_gateway

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
    if kind in (Invoice.Kind.CREDIT_PURCHASE, Invoice.Kind.AUTO_TOPUP):
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


@transaction.atomic
def invoice_sync(
    *, invoice: gateway.Invoice, observed_at: datetime | None = None
) -> Invoice | None:
    """Create or update the local copy of a gateway invoice and tell what changed
    (`invoice_changed`: the lifecycle reacts). A snapshot older than the stored one (a late
    event) changes nothing. `observed_at` is the event's `created`; a record just fetched from the
    gateway is observed now. Returns None for a customer no billing profile knows."""
    observed_at = observed_at or timezone.now()
    profile = (
        BillingProfile.objects.select_related("organization")
        .filter(gateway_customer_id=invoice.customer)
        .first()
        if invoice.customer
        else None
    )
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
                    gateway_id=invoice.id, billing_profile=profile, **fields
                )
        except IntegrityError:  # another worker stored it first: compare with theirs
            local = Invoice.objects.select_for_update().get(gateway_id=invoice.id)
        else:
            invoice_changed.send(
                sender=Invoice, invoice=local, previous_status="", previous_attempts=0
            )
            return local
    incoming = _version(fields["status"], invoice.attempt_count, invoice.amount_paid, observed_at)
    stored = _version(local.status, local.attempt_count, local.amount_paid, local.observed_at)
    if incoming < stored:
        return local
    previous_status, previous_attempts = local.status, local.attempt_count
    for name, value in fields.items():
        setattr(local, name, value)
    local.save()
    invoice_changed.send(
        sender=Invoice,
        invoice=local,
        previous_status=previous_status,
        previous_attempts=previous_attempts,
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

    @property
    def amount_paid(self) -> int:
        return sum(invoice.amount_paid for invoice in self.paid)


def _refetch(gateway_id: str) -> None:
    try:
        invoice_sync(invoice=get_gateway().invoice_retrieve(invoice_id=gateway_id))
    except GatewayError:
        logger.warning("could not refetch invoice %s", gateway_id, exc_info=True)


def invoices_pay_now(*, actor: User, organization: Organization) -> PayNowResult:
    """Charge the saved card for every overdue seat invoice, oldest first, and sync each answer;
    the sync restores the organization the moment nothing is overdue, within this request. Stops
    at the first decline. The idempotency key includes the attempt count, so a double click pays
    once and a retry after a new card is a new attempt."""
    overdue = list(selectors.overdue_invoices(organization=organization))
    if not overdue:
        raise NothingToPay
    was = organization.billing_state
    result = PayNowResult()
    for invoice in overdue:
        try:
            paid = get_gateway().invoice_pay(
                invoice_id=invoice.gateway_id,
                idempotency_key=f"pay-now-{invoice.gateway_id}-{invoice.attempt_count}",
            )
        except CardError as error:
            result.failure = error
            _refetch(invoice.gateway_id)
            break
        except GatewayError:
            # Paid or voided elsewhere meanwhile: the gateway's copy says which.
            _refetch(invoice.gateway_id)
            continue
        synced = invoice_sync(invoice=paid)
        if synced is not None:
            result.paid.append(synced)
    organization.refresh_from_db()
    result.restored = was != organization.billing_state == Organization.BillingState.ACTIVE
    with transaction.atomic():
        audit_record(
            organization=organization,
            actor=actor,
            action="billing.pay_now",
            target=", ".join(invoice.number for invoice in result.paid),
            amount_paid=result.amount_paid,
            failure=result.failure.message if result.failure else "",
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
