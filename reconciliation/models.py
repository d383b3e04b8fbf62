"""Findings: each difference between the gateway's books and ours, and how it ended."""

from typing import Any

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models import Q
from django.utils import timezone

from organizations.models import Organization


class Finding(models.Model):
    """One difference between what the gateway says and what the local books say, for one payer
    and one gateway object. At most one is open per (kind, payer, gateway id); a difference seen
    again bumps `last_seen`. It ends healed (by the reconciler, through the service a webhook
    would have called), fixed by staff (with a note), explained by staff (with a note), or
    cleared when a later check no longer sees it (a late webhook applied it)."""

    class Kind(models.TextChoices):
        PAID_NOT_CREDITED = "paid_not_credited", "Paid on the gateway but not credited here"
        CREDITED_WITHOUT_PAYMENT = (
            "credited_without_payment",
            "Credited here without a gateway payment",
        )
        REFUND_NOT_APPLIED = "refund_not_applied", "Refund not applied"
        DISPUTE_NOT_APPLIED = "dispute_not_applied", "Dispute not applied"
        INVOICE_MISSING = "invoice_missing", "Invoice missing here"
        INVOICE_DIFFERS = "invoice_differs", "Invoice status or amount differs"
        SUBSCRIPTION_DIFFERS = "subscription_differs", "Subscription status or quantity differs"
        CUSTOMER_GONE = "customer_gone", "Gateway customer gone"
        BALANCE_DIFFERS = "balance_differs", "Balance ≠ Σ ledger"
        HELD_DIFFERS = "held_differs", "Held ≠ Σ active holds"
        LIFECYCLE_DIFFERS = "lifecycle_differs", "Lifecycle state ≠ what is overdue"

    class State(models.TextChoices):
        OPEN = "open", "Open"
        HEALED = "healed", "Healed"
        EXPLAINED = "explained", "Explained"

    class Ending(models.TextChoices):
        HEALED = "healed", "Healed automatically"
        FIXED = "fixed", "Fixed by staff"
        EXPLAINED = "explained", "Explained by staff"
        CLEARED = "cleared", "No longer differs (applied meanwhile)"

    kind = models.CharField(max_length=40, choices=Kind.choices)
    # The payer: the organization's id, "user:<id>" for a personal account, or "account:<id>"
    # for a credit account whose holder is gone. Text, so that findings outlive their payer.
    payer = models.CharField(max_length=64)
    organization = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    gateway_id = models.CharField(
        max_length=255, blank=True, help_text="The gateway object the finding is about."
    )
    # The local object: a generic reference when there is one, and always its name in words.
    local_type = models.ForeignKey(
        ContentType, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    local_id = models.CharField(max_length=64, blank=True)
    local_object = GenericForeignKey("local_type", "local_id")
    local = models.CharField(max_length=255, blank=True)
    gateway_says = models.JSONField(default=dict, blank=True)
    local_says = models.JSONField(default=dict, blank=True)
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)
    state = models.CharField(max_length=20, choices=State.choices, default=State.OPEN)
    ending = models.CharField(max_length=20, choices=Ending.choices, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    note = models.TextField(blank=True)
    # Why an automatic heal did not take (its error), kept for staff.
    heal_error = models.TextField(blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "payer", "gateway_id"],
                condition=Q(state="open"),
                name="finding_one_open_per_object",
            ),
            models.CheckConstraint(
                condition=Q(state__in=["open", "healed", "explained"]),
                name="finding_state_known",
            ),
        ]
        indexes = [
            models.Index(fields=["payer", "state"]),
            models.Index(fields=["state", "kind", "-last_seen"]),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.gateway_id or self.local} ({self.state})"

    def as_json(self) -> dict[str, Any]:
        """The shape `manage.py reconcile --json` prints for each finding."""
        return {
            "kind": self.kind,
            "payer": self.payer,
            "gateway_id": self.gateway_id,
            "local": self.local,
            "state": self.state,
        }


class ReconciliationRun(models.Model):
    """One run of the reconciler: what it checked and found. The incremental run reads the
    webhook inbox from the start of the last run on."""

    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    full = models.BooleanField(default=False)
    dry_run = models.BooleanField(default=False)
    checked = models.PositiveIntegerField(default=0)
    found = models.PositiveIntegerField(default=0)
    healed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0, help_text="Payers whose check failed.")

    class Meta:
        indexes = [models.Index(fields=["-started_at"])]

    def __str__(self) -> str:
        what = "full sweep" if self.full else "recent activity"
        return f"{what} at {self.started_at:%Y-%m-%d %H:%M} UTC: {self.checked} checked"
