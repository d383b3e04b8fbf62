"""Reads, always scoped to one organization (or one user)."""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum
from django.db.models.functions import Coalesce

from accounts.models import User
from invoices.models import Invoice
from organizations.models import Organization
from seats.models import SeatSubscription, SubscriptionStatus

# The invoices whose non-payment starts the lifecycle. Credit purchases fail in front of the
# buyer, and a failed auto top-up turns auto top-up off instead.
LIFECYCLE_KINDS = (Invoice.Kind.SEAT_SUBSCRIPTION, Invoice.Kind.SEAT_PRORATION)


def invoices_of_organization(*, organization: Organization) -> QuerySet[Invoice]:
    # Gateway times are whole seconds: the number breaks ties, so the list reads in issue order.
    return Invoice.objects.filter(billing_profile__organization=organization).order_by(
        "-created", "-number", "-pk"
    )


def invoices_of_person(*, user: User) -> QuerySet[Invoice]:
    """The personal billing profile's invoices (personal credits), newest first."""
    return Invoice.objects.filter(billing_profile__user=user).order_by("-created", "-number", "-pk")


@dataclass(frozen=True)
class InvoiceFilters:
    kind: str = ""
    status: str = ""
    date_from: date | None = None
    date_to: date | None = None

    @property
    def active(self) -> bool:
        return bool(self.kind or self.status or self.date_from or self.date_to)


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def invoices_filtered(*, organization: Organization, filters: InvoiceFilters) -> QuerySet[Invoice]:
    """The Invoices tab's list: by kind, status and creation date (UTC days, both inclusive)."""
    invoices = invoices_of_organization(organization=organization)
    if filters.kind:
        invoices = invoices.filter(kind=filters.kind)
    if filters.status:
        invoices = invoices.filter(status=filters.status)
    if filters.date_from:
        invoices = invoices.filter(created__gte=_start_of(filters.date_from))
    if filters.date_to:
        invoices = invoices.filter(created__lt=_start_of(filters.date_to + timedelta(days=1)))
    return invoices


def invoice_totals(invoices: QuerySet[Invoice]) -> dict[str, int]:
    """Count and sums in cents over a (filtered) list of invoices, in one query."""
    totals: dict[str, int] = invoices.order_by().aggregate(
        count=Count("pk"),
        amount_due=Coalesce(Sum("amount_due"), 0),
        amount_paid=Coalesce(Sum("amount_paid"), 0),
        amount_remaining=Coalesce(Sum("amount_remaining"), 0),
    )
    return totals


# A draft the gateway will never finalize and charge by itself is owed as it stands: a renewal
# that Stripe leaves as a draft while the subscription is unpaid (auto_advance off, or its
# subscription unpaid here, whichever event came first), or a draft it could not finalize.
# A renewal draft in its first hour, which the gateway finalizes and charges itself, is not.
_OF_AN_UNPAID_SUBSCRIPTION = Exists(
    SeatSubscription.objects.filter(
        gateway_subscription_id=OuterRef("gateway_subscription_id"),
        status=SubscriptionStatus.UNPAID,
    )
)
OVERDUE_DRAFT = Q(status=Invoice.Status.DRAFT, amount_remaining__gt=0) & (
    Q(auto_advance=False) | ~Q(finalization_error_code="") | Q(_OF_AN_UNPAID_SUBSCRIPTION)
)

# Overdue: a seat invoice unpaid from its first failed attempt on (DESIGN.md, the lifecycle), one
# whose payment the bank took back (a dispute lost) until a repayment is paid, or a draft as
# above.
OVERDUE = (
    Q(
        status__in=[Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE],
        attempt_count__gte=1,
        amount_remaining__gt=0,
    )
    | Q(status=Invoice.Status.PAID, dispute_status="lost", dispute_repaid_at__isnull=True)
    | OVERDUE_DRAFT
)


def overdue_invoices(*, organization: Organization) -> QuerySet[Invoice]:
    """Seat invoices overdue: what "pay now" pays (or repays), what keeps an organization in
    grace or suspension, oldest first. When grace starts is the lifecycle's own rule
    (`dunning.lifecycle`), not this one."""
    return (
        Invoice.objects.filter(
            OVERDUE, billing_profile__organization=organization, kind__in=LIFECYCLE_KINDS
        )
        .select_related("billing_profile")
        .order_by("created", "pk")
    )
