"""Reads about seats, always scoped by organization: occupancy, who has a seat, and the quotes the
confirmation pages show (those ask the gateway, which is the source of truth for money)."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.db.models import Q, QuerySet

from billing.clock import billing_now
from billing.selectors import saved_card
from organizations.models import Invitation, Membership, Organization
from payments.factory import get_gateway
from payments.gateway import PaymentMethod
from seats.exceptions import NoSeatSubscription, SeatError
from seats.models import MAX_SEATS, SEAT_ROLES, SeatChange, SeatPlan, SeatSubscription


def add_months(anchor: datetime, months: int) -> datetime:
    """The anchor's day of month, `months` later; a short month clamps to its last day (the
    gateway's own billing-date rule)."""
    index = anchor.month - 1 + months
    year, month = anchor.year + index // 12, index % 12 + 1
    return anchor.replace(
        year=year, month=month, day=min(anchor.day, calendar.monthrange(year, month)[1])
    )


# Plans and the subscription


def seat_plans() -> QuerySet[SeatPlan]:
    """Plans offered for new purchases."""
    return SeatPlan.objects.filter(is_active=True)


def seat_subscription(*, organization: Organization) -> SeatSubscription | None:
    return SeatSubscription.objects.select_related("plan").filter(organization=organization).first()


def live_seat_subscription(*, organization: Organization) -> SeatSubscription:
    subscription = seat_subscription(organization=organization)
    if subscription is None or not subscription.is_live:
        raise NoSeatSubscription
    return subscription


def seat_changes(*, organization: Organization) -> QuerySet[SeatChange]:
    return (
        SeatChange.objects.filter(organization=organization)
        .select_related("actor", "plan")
        .order_by("-created_at", "-pk")
    )


def pending_purchase(*, organization: Organization) -> SeatChange | None:
    """A purchase sent to Checkout and not yet confirmed by the gateway."""
    return (
        SeatChange.objects.filter(
            organization=organization,
            kind=SeatChange.Kind.PURCHASE,
            status=SeatChange.Status.PENDING,
        )
        .exclude(checkout_session_id="")
        .order_by("-created_at")
        .first()
    )


def purchase_for_checkout(*, organization: Organization, session_id: str) -> SeatChange | None:
    """The purchase a Checkout session was for (the buyer is back from it)."""
    return (
        SeatChange.objects.select_related("receipt")
        .filter(organization=organization, checkout_session_id=session_id)
        .first()
    )


# Occupancy


def _seat_memberships(organization_id: UUID) -> QuerySet[Membership]:
    # Seats go to the longest-standing people first: when an organization has fewer seats than
    # seat-holders (its subscription ended, or the gateway lowered it), the newest go without.
    return Membership.objects.filter(organization_id=organization_id, role__in=SEAT_ROLES).order_by(
        "created_at", "pk"
    )


def _pending_seat_invitations(organization_id: UUID) -> QuerySet[Invitation]:
    return (
        Invitation.objects.pending()
        .filter(organization_id=organization_id, role__in=SEAT_ROLES)
        .order_by("created_at", "pk")
    )


def occupied_seat_count(*, organization_id: UUID, exclude_invitation_id: int | None = None) -> int:
    """Owners, admins and members, plus pending invitations for those roles."""
    invitations = _pending_seat_invitations(organization_id)
    if exclude_invitation_id is not None:
        invitations = invitations.exclude(pk=exclude_invitation_id)
    return _seat_memberships(organization_id).count() + invitations.count()


@dataclass(frozen=True)
class SeatHolder:
    kind: str  # "member" or "invitation"
    pk: int
    email: str
    name: str
    role: str
    role_label: str
    since: datetime
    has_seat: bool

    def describe(self) -> str:
        if self.kind == "invitation":
            return f"an invitation for {self.email} ({self.role_label.lower()})"
        return f"{self.email} ({self.role_label.lower()})"


@dataclass(frozen=True)
class Occupancy:
    subscription: SeatSubscription | None
    seats: int
    holders: list[SeatHolder]
    without_seat: list[SeatHolder]  # billing managers and their invitations

    @property
    def limited(self) -> bool:
        return self.subscription is not None and self.subscription.limited

    @property
    def occupied(self) -> int:
        return len(self.holders)

    @property
    def empty(self) -> int:
        return max(self.seats - self.occupied, 0)

    @property
    def over(self) -> int:
        """Seat-holders beyond the seats (only when seats were lost under them)."""
        return max(self.occupied - self.seats, 0) if self.limited else 0


def seat_occupancy(*, organization: Organization) -> Occupancy:
    """Who holds a seat: members first (longest-standing first), then pending invitations."""
    subscription = seat_subscription(organization=organization)
    seats = subscription.seats if subscription else 0
    memberships = Membership.objects.filter(organization=organization).select_related("user")
    invitations = Invitation.objects.pending().filter(organization=organization)
    holders: list[SeatHolder] = []
    without: list[SeatHolder] = []
    for membership in memberships.order_by("created_at", "pk"):
        needs = membership.role in SEAT_ROLES
        holder = SeatHolder(
            kind="member",
            pk=membership.pk,
            email=membership.user.email,
            name=membership.user.name,
            role=membership.role,
            role_label=membership.get_role_display(),
            since=membership.created_at,
            has_seat=needs and len(holders) < seats,
        )
        (holders if needs else without).append(holder)
    for invitation in invitations.order_by("created_at", "pk"):
        needs = invitation.role in SEAT_ROLES
        holder = SeatHolder(
            kind="invitation",
            pk=invitation.pk,
            email=invitation.email,
            name="",
            role=invitation.role,
            role_label=invitation.get_role_display(),
            since=invitation.created_at,
            has_seat=needs and len(holders) < seats,
        )
        (holders if needs else without).append(holder)
    return Occupancy(subscription=subscription, seats=seats, holders=holders, without_seat=without)


def member_has_seat(*, membership: Membership) -> bool:
    """True when this person may use a seat now: an owner, admin or member of an organization
    whose live subscription has enough seats for them (longest-standing first). Billing managers
    never hold one; an organization without seats has none to give. Two queries, no gateway."""
    if membership.role not in SEAT_ROLES:
        return False
    subscription = (
        SeatSubscription.objects.filter(organization_id=membership.organization_id)
        .only("status", "quantity", "removing")
        .first()
    )
    if subscription is None or subscription.seats == 0:
        return False
    ahead = (
        _seat_memberships(membership.organization_id)
        .filter(
            Q(created_at__lt=membership.created_at)
            | Q(created_at=membership.created_at, pk__lt=membership.pk)
        )
        .count()
    )
    return ahead < subscription.seats


# Quotes for the confirmation pages


@dataclass(frozen=True)
class PurchaseQuote:
    plan: SeatPlan
    seats: int
    occupied: int
    starts: datetime
    next_billing_date: datetime
    card: PaymentMethod | None

    @property
    def monthly_amount(self) -> int:
        return self.plan.unit_amount * self.seats


def seat_purchase_quote(*, organization: Organization, plan: SeatPlan, seats: int) -> PurchaseQuote:
    """What a first purchase would charge today (a full month) and when it renews."""
    starts = billing_now()
    return PurchaseQuote(
        plan=plan,
        seats=seats,
        occupied=occupied_seat_count(organization_id=organization.pk),
        starts=starts,
        next_billing_date=add_months(starts, 1),
        card=saved_card(organization=organization),
    )


@dataclass(frozen=True)
class AdditionPreview:
    """The gateway's own preview of adding `seats` now: the pro-rated charge for today, and the
    terms it rests on (carried through the confirmation form to detect a stale preview)."""

    seats: int
    quantity_before: int
    unit_amount: int
    amount_due: int
    next_period_amount: int
    proration_date: datetime
    period_start: datetime
    period_end: datetime
    card: PaymentMethod | None

    @property
    def quantity_after(self) -> int:
        return self.quantity_before + self.seats


def seat_addition_preview(*, organization: Organization, seats: int) -> AdditionPreview:
    row = live_seat_subscription(organization=organization)
    gateway = get_gateway()
    current = gateway.subscription_retrieve(subscription_id=row.gateway_subscription_id)
    if current.status not in SeatSubscription.LIVE_STATUSES:
        raise NoSeatSubscription
    if current.quantity + seats > MAX_SEATS:
        raise SeatError(
            f"A subscription holds at most {MAX_SEATS:,} seats; you have {current.quantity:,}."
        )
    at = billing_now()
    preview = gateway.subscription_preview_quantity(
        subscription_id=current.id, quantity=current.quantity + seats, proration_date=at
    )
    return AdditionPreview(
        seats=seats,
        quantity_before=current.quantity,
        unit_amount=current.unit_amount,
        amount_due=preview.amount_due,
        next_period_amount=preview.next_period_amount,
        proration_date=at,
        period_start=current.current_period_start,
        period_end=current.current_period_end,
        card=gateway.payment_method_default(customer_id=current.customer),
    )


@dataclass(frozen=True)
class RemovalQuote:
    subscription: SeatSubscription
    seats: int
    occupancy: Occupancy

    @property
    def quantity_after(self) -> int:
        return self.subscription.quantity - self.seats

    @property
    def next_invoice_after(self) -> int:
        return self.quantity_after * self.subscription.unit_amount
