import uuid
from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from organizations.roles import Role


class Organization(models.Model):
    class BillingState(models.TextChoices):
        """The failed-payment lifecycle: active → grace → suspended → deleted, and back to active
        on payment. Only `dunning.lifecycle` moves an organization between these states."""

        ACTIVE = "active", "Active"
        GRACE = "grace", "Grace period"
        SUSPENDED = "suspended", "Suspended"
        DELETED = "deleted", "Deleted"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now)

    billing_state = models.CharField(
        max_length=20, choices=BillingState.choices, default=BillingState.ACTIVE
    )
    billing_state_since = models.DateTimeField(null=True, blank=True)
    grace_ends_at = models.DateTimeField(null=True, blank=True)
    grace_reminder_sent_at = models.DateTimeField(null=True, blank=True)
    suspended_at = models.DateTimeField(null=True, blank=True)
    # Why the current (or last) suspension happened: the sweep's "grace ended without payment"
    # or staff's own reason. A staff suspension runs the retention countdown only if staff chose
    # it (`retention_scheduled`); a suspension for non-payment always does.
    suspension_reason = models.CharField(max_length=300, blank=True)
    suspended_by_staff = models.BooleanField(default=False)
    retention_scheduled = models.BooleanField(default=True)
    # The most urgent "data will be deleted in N days" notice sent during this suspension.
    deletion_notice_days = models.PositiveSmallIntegerField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The sweeps read only the few organizations in grace or suspension, never all.
            models.Index(
                fields=["grace_ends_at"],
                name="organization_grace_due",
                condition=Q(billing_state="grace"),
            ),
            models.Index(
                fields=["suspended_at"],
                name="organization_suspended_since",
                condition=Q(billing_state="suspended"),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(billing_state__in=["active", "grace", "suspended", "deleted"]),
                name="organization_billing_state_known",
            ),
            models.CheckConstraint(
                condition=~Q(billing_state="grace") | Q(grace_ends_at__isnull=False),
                name="organization_grace_has_deadline",
            ),
            models.CheckConstraint(
                condition=~Q(billing_state="suspended") | Q(suspended_at__isnull=False),
                name="organization_suspension_has_start",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_suspended(self) -> bool:
        return self.billing_state == self.BillingState.SUSPENDED

    @property
    def deletion_due_at(self) -> datetime | None:
        """When a suspended organization's data is deleted unless it pays; None when no
        deletion is scheduled (not suspended, or suspended by staff without the countdown)."""
        if (
            self.billing_state != self.BillingState.SUSPENDED
            or self.suspended_at is None
            or not self.retention_scheduled
        ):
            return None
        due: datetime = self.suspended_at + settings.BILLING_RETENTION_PERIOD
        return due


class Membership(models.Model):
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=20, choices=Role.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "user"], name="one_membership_per_user"
            ),
            models.CheckConstraint(condition=Q(role__in=Role.values), name="membership_role_known"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.organization_id} as {self.role}"


class InvitationQuerySet(models.QuerySet["Invitation"]):
    def open(self) -> "InvitationQuerySet":
        """Not accepted or revoked yet; expired ones included (they can be resent)."""
        return self.filter(accepted_at__isnull=True, revoked_at__isnull=True)

    def pending(self) -> "InvitationQuerySet":
        """Open and not expired: its link works, and for an owner, admin or member it holds a
        seat."""
        return self.open().filter(expires_at__gt=timezone.now())


class Invitation(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        ACCEPTED = "accepted"
        REVOKED = "revoked"
        EXPIRED = "expired"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="invitations"
    )
    email = models.EmailField()
    role = models.CharField(max_length=20, choices=Role.choices)
    # Only a hash of the link's token is stored; the token itself is in the email alone.
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = InvitationQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "email"],
                condition=Q(accepted_at__isnull=True, revoked_at__isnull=True),
                name="one_open_invitation_per_email",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} to {self.organization_id} as {self.role}"

    @property
    def status(self) -> "Invitation.Status":
        if self.accepted_at:
            return self.Status.ACCEPTED
        if self.revoked_at:
            return self.Status.REVOKED
        if self.expires_at <= timezone.now():
            return self.Status.EXPIRED
        return self.Status.PENDING


class AuditEvent(models.Model):
    """Who did what to which organization, and when. Never updated; kept when its subject goes."""

    organization = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    action = models.CharField(max_length=60)
    target = models.CharField(max_length=255, blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.action} {self.target}"
