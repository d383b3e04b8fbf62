"""Seat plans, each organization's seat subscription (a mirror of the gateway's), the changes asked
for in the app and the paid seat invoices the billing contacts were told about."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from organizations.models import Organization
from organizations.roles import Role

# Roles that hold a seat. Billing managers never do (DESIGN: they use no seat).
SEAT_ROLES: frozenset[str] = frozenset({Role.OWNER, Role.ADMIN, Role.MEMBER})

# Upper bound for any seat count a person types, and for a subscription's total.
MAX_SEATS = 10_000


class SeatPlan(models.Model):
    """A price per seat per month, offered on the Seats tab. Editable in the admin: a new price
    applies to new purchases (it becomes a new gateway price); running subscriptions keep theirs,
    as with Stripe."""

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=300, blank=True)
    unit_amount = models.PositiveIntegerField(help_text="Cents per seat per month.")
    currency = models.CharField(max_length=3, default="usd")
    is_active = models.BooleanField(default=True, help_text="Offered for new purchases.")
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ("position", "unit_amount")
        constraints = [
            models.CheckConstraint(condition=Q(unit_amount__gt=0), name="seat_plan_has_a_price"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.unit_amount / 100:.2f} {self.currency.upper()}/seat/month)"

    @property
    def lookup_key(self) -> str:
        # The amount is part of the key: a gateway price never changes, so a new amount is a new
        # price, created on first use.
        return f"kilo-seats-{self.code}-{self.unit_amount}-{self.currency}-month"


class SubscriptionStatus(models.TextChoices):
    """The gateway's subscription states (Stripe's)."""

    INCOMPLETE = "incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired"
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    UNPAID = "unpaid"
    CANCELED = "canceled"
    PAUSED = "paused"


class SeatSubscription(models.Model):
    """The organization's seat subscription as the gateway last told it (re-fetched on every
    webhook), plus the seats this app is in the middle of removing."""

    Status = SubscriptionStatus

    # States in which the seats exist. Past due keeps them: while the gateway still retries,
    # whether an organization that does not pay keeps its service is the dunning lifecycle's
    # decision (grace, suspension). Unpaid does not: the gateway has stopped collecting and
    # bills every new period as a draft nobody is charged for until the organization pays, so
    # its seats are on hold until then (docs/decisions.md, "Who holds a seat").
    LIVE_STATUSES: frozenset[str] = frozenset(
        {
            SubscriptionStatus.ACTIVE,
            SubscriptionStatus.TRIALING,
            SubscriptionStatus.PAST_DUE,
        }
    )
    # States from which a subscription never comes back: seats need a new one.
    ENDED_STATUSES: frozenset[str] = frozenset(
        {SubscriptionStatus.CANCELED, SubscriptionStatus.INCOMPLETE_EXPIRED}
    )

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="seat_subscription"
    )
    plan = models.ForeignKey(
        SeatPlan, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    gateway_subscription_id = models.CharField(max_length=80, unique=True)
    gateway_customer_id = models.CharField(max_length=80, blank=True)
    gateway_created = models.DateTimeField(help_text="When the gateway created the subscription.")
    status = models.CharField(max_length=20, choices=Status.choices)
    quantity = models.PositiveIntegerField()
    pending_quantity = models.PositiveIntegerField(
        null=True, blank=True, help_text="Quantity waiting for its invoice to be paid."
    )
    unit_amount = models.PositiveIntegerField(help_text="Cents per seat per month.")
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField()
    cancel_at_period_end = models.BooleanField(default=False)
    # Seats being removed right now: held back from occupancy checks between the local check and
    # the gateway's answer, so nobody takes a seat that is on its way out.
    removing = models.PositiveIntegerField(default=0)
    activated_at = models.DateTimeField(
        null=True, blank=True, help_text="When seats first existed; seat rules apply from then."
    )
    ended_at = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=SubscriptionStatus.values),
                name="seat_subscription_status_known",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organization_id}: {self.quantity} seats ({self.status})"

    @property
    def is_live(self) -> bool:
        return self.status in self.LIVE_STATUSES

    @property
    def on_hold(self) -> bool:
        """Unpaid at the gateway: no seat until the overdue invoices, the most recent included,
        are paid; then the same subscription is active again (nothing is bought anew)."""
        return self.status == SubscriptionStatus.UNPAID

    @property
    def has_ended(self) -> bool:
        return self.status in self.ENDED_STATUSES

    @property
    def seats(self) -> int:
        """Seats that exist now and may be taken (0 once the subscription has ended)."""
        if not self.is_live:
            return 0
        return max(self.quantity - self.removing, 0)

    @property
    def limited(self) -> bool:
        """An organization that has never had seats is not limited yet (decisions.md)."""
        return self.activated_at is not None

    @property
    def monthly_amount(self) -> int:
        return self.quantity * self.unit_amount

    @property
    def next_invoice_amount(self) -> int | None:
        """The renewal invoice's amount, or None when no renewal is coming."""
        if not (self.is_live or self.on_hold) or self.cancel_at_period_end:
            return None
        return self.monthly_amount


class ChangeKind(models.TextChoices):
    PURCHASE = "purchase"
    ADD = "add"
    REMOVE = "remove"


class ChangeStatus(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # An addition whose invoice was not paid before its pending update expired (23 hours): the
    # gateway voided the invoice and the seats never came.
    EXPIRED = "expired"


class SeatChange(models.Model):
    """A purchase, addition or removal asked for in the app. Its key comes from the confirmation
    page, so a double submit finds the first attempt and charges once."""

    Kind = ChangeKind
    Status = ChangeStatus

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="seat_changes"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    idempotency_key = models.CharField(max_length=80, unique=True)
    seats = models.PositiveIntegerField(help_text="Seats bought, added or removed.")
    quantity_before = models.PositiveIntegerField(null=True, blank=True)
    quantity_after = models.PositiveIntegerField(null=True, blank=True)
    plan = models.ForeignKey(
        SeatPlan, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    amount = models.IntegerField(null=True, blank=True, help_text="Cents charged.")
    gateway_subscription_id = models.CharField(max_length=80, blank=True)
    gateway_invoice_id = models.CharField(max_length=80, blank=True, db_index=True)
    checkout_session_id = models.CharField(max_length=120, blank=True)
    # The moment an addition is prorated from: the preview's, so the charge is the one shown, and
    # a retry sends the gateway exactly the same request.
    proration_date = models.DateTimeField(null=True, blank=True)
    failure_message = models.CharField(max_length=300, blank=True)
    # Where the payer confirms the payment with their bank (3-D Secure) while it waits on them.
    action_url = models.URLField(max_length=1000, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "-created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=ChangeKind.values), name="seat_change_kind_known"
            ),
            models.CheckConstraint(
                condition=Q(status__in=ChangeStatus.values),
                name="seat_change_status_known",
            ),
            models.CheckConstraint(condition=Q(seats__gt=0), name="seat_change_moves_seats"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.seats} ({self.status})"


class SeatReceipt(models.Model):
    """A paid seat invoice (purchase, addition, renewal) recorded once per invoice id, whoever
    learns of it first (the service's answer or the webhook): its audit event and email go with
    the row, so they happen exactly once."""

    class Kind(models.TextChoices):
        PURCHASE = "purchase"
        ADD = "add"
        RENEWAL = "renewal"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="seat_receipts"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    gateway_invoice_id = models.CharField(max_length=80, unique=True)
    invoice_number = models.CharField(max_length=40, blank=True)
    amount = models.IntegerField(help_text="Cents paid.")
    quantity = models.PositiveIntegerField(help_text="Seats on the subscription after it.")
    seats = models.PositiveIntegerField(
        null=True, blank=True, help_text="Seats bought or added by it."
    )
    change = models.OneToOneField(
        SeatChange, null=True, blank=True, on_delete=models.SET_NULL, related_name="receipt"
    )
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.kind} {self.invoice_number or self.gateway_invoice_id}"
