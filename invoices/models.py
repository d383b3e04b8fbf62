from datetime import datetime
from typing import Any

from django.db import models
from django.db.models import Q
from django.utils import timezone

from billing.models import BillingProfile
from payments.gateway import hard_decline


class Invoice(models.Model):
    """The local copy of one gateway invoice of a billing profile, kept for accounting even when
    its organization's data is purged. Synced from invoice.* events by `invoice_sync`."""

    class Kind(models.TextChoices):
        SEAT_SUBSCRIPTION = "seat_subscription", "Seat subscription"
        SEAT_PRORATION = "seat_proration", "Seat proration"
        CREDIT_PURCHASE = "credit_purchase", "Credit purchase"
        AUTO_TOPUP = "auto_topup", "Auto top-up"
        SEAT_REPAYMENT = "seat_repayment", "Seat repayment (after a chargeback)"
        OTHER = "other", "Other"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        OPEN = "open", "Open"
        PAID = "paid", "Paid"
        VOID = "void", "Void"
        UNCOLLECTIBLE = "uncollectible", "Uncollectible"

    billing_profile = models.ForeignKey(
        BillingProfile, on_delete=models.PROTECT, related_name="invoices"
    )
    gateway_id = models.CharField(max_length=80, unique=True)
    number = models.CharField(max_length=80, blank=True)
    kind = models.CharField(max_length=30, choices=Kind.choices)
    status = models.CharField(max_length=20, choices=Status.choices)
    billing_reason = models.CharField(max_length=40, blank=True)
    currency = models.CharField(max_length=3, default="usd")
    amount_due = models.BigIntegerField(default=0, help_text="Cents.")
    amount_paid = models.BigIntegerField(default=0, help_text="Cents.")
    amount_remaining = models.BigIntegerField(default=0, help_text="Cents.")
    attempt_count = models.PositiveIntegerField(default=0)
    next_payment_attempt = models.DateTimeField(null=True, blank=True)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    hosted_invoice_url = models.URLField(max_length=500, blank=True)
    invoice_pdf = models.URLField(max_length=500, blank=True)
    gateway_subscription_id = models.CharField(max_length=80, blank=True)
    # When its first payment attempt failed: overdue from then on (DESIGN.md, the lifecycle). For
    # a draft that the gateway will not charge by itself (a renewal of an unpaid subscription,
    # or one it could not finalize): when it was first seen so.
    first_failed_at = models.DateTimeField(null=True, blank=True)
    # The gateway's auto_advance: False on the renewals Stripe leaves as drafts while a
    # subscription is unpaid (docs/decisions.md, "Unpaid subscriptions").
    auto_advance = models.BooleanField(default=True)
    # Why the gateway could not finalize it (Stripe's last_finalization_error), e.g. a billing
    # address its tax rules reject: the draft is owed but cannot be paid until it is fixed.
    finalization_error_code = models.CharField(max_length=60, blank=True)
    finalization_error = models.CharField(max_length=300, blank=True)
    # How the last attempt ended, as the gateway tells it (its PaymentIntent's last error).
    payment_error_code = models.CharField(max_length=60, blank=True)
    payment_decline_code = models.CharField(max_length=60, blank=True)
    # The bank wants the payer to confirm the payment (3-D Secure): not a decline.
    awaiting_authentication = models.BooleanField(default=False)
    # Money that went back to the card after it was paid: refunds, and a cardholder's dispute.
    amount_refunded = models.BigIntegerField(default=0, help_text="Cents.")
    dispute_status = models.CharField(max_length=30, blank=True)
    dispute_amount = models.BigIntegerField(default=0, help_text="Cents.")
    # A lost dispute leaves the invoice unpaid in effect until a repayment invoice is paid.
    dispute_repaid_at = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    lines = models.JSONField(default=list, blank=True)
    created = models.DateTimeField(help_text="When the gateway created the invoice.")
    # The time of the snapshot last applied (an event's `created`, or when it was fetched):
    # with the status and attempt count it decides whether a late event is older.
    observed_at = models.DateTimeField()
    synced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["billing_profile", "-created"]),
            # The dunning sweep's "overdue for 7 days" reads only unpaid invoices that failed.
            models.Index(
                fields=["first_failed_at"],
                name="invoice_overdue_since",
                condition=Q(
                    status__in=["draft", "open", "uncollectible"], first_failed_at__isnull=False
                ),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    kind__in=[
                        "seat_subscription",
                        "seat_proration",
                        "credit_purchase",
                        "auto_topup",
                        "seat_repayment",
                        "other",
                    ]
                ),
                name="invoice_kind_known",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["draft", "open", "paid", "void", "uncollectible"]),
                name="invoice_status_known",
            ),
            models.CheckConstraint(
                condition=Q(amount_due__gte=0, amount_paid__gte=0, amount_remaining__gte=0),
                name="invoice_amounts_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return self.number or self.gateway_id

    @property
    def display_number(self) -> str:
        return self.number or "Draft"

    @property
    def charged_back(self) -> bool:
        """A dispute lost: the bank took the payment back, so it is owed again."""
        return self.dispute_status == "lost" and self.dispute_repaid_at is None

    @property
    def declined_for_good(self) -> bool:
        """Its last attempt was a hard decline, or found no card: the gateway keeps a retry on
        the calendar but makes none with the same card (docs/decisions.md), so the pages and
        emails say so instead of "tried again on"."""
        return self.status == "open" and hard_decline(
            code=self.payment_error_code, decline_code=self.payment_decline_code
        )

    @property
    def not_finalized(self) -> bool:
        """A draft the gateway could not finalize: owed, but payable only once the reason is
        fixed (the billing address, for tax)."""
        return self.status == self.Status.DRAFT and bool(self.finalization_error_code)

    @property
    def held_as_draft(self) -> bool:
        """A draft the gateway will not finalize and charge by itself (a renewal of an unpaid
        subscription): "pay now" finalizes and pays it."""
        return self.status == self.Status.DRAFT and not self.auto_advance

    @property
    def failed_attempts(self) -> int:
        """Failed attempts for the lifecycle's rule: the gateway's count, and a failed
        finalization counts as one (docs/decisions.md)."""
        return self.attempt_count + (1 if self.not_finalized else 0)

    @property
    def finalization_reason(self) -> str:
        """What to tell the payer about a failed finalization."""
        if self.finalization_error_code == "customer_tax_location_invalid":
            return (
                "the billing address cannot be used to calculate tax (a US address needs a "
                "5-digit ZIP code): correct it under Billing details, then pay"
            )
        return self.finalization_error or self.finalization_error_code.replace("_", " ")

    @property
    def decline_reason(self) -> str:
        """`lost_card` → "lost card"."""
        return (self.payment_decline_code or self.payment_error_code).replace("_", " ")

    @property
    def dispute_label(self) -> str:
        if not self.dispute_status:
            return ""
        if self.dispute_status.startswith("warning_"):
            return "inquiry" if self.dispute_status != "warning_closed" else "inquiry closed"
        return {
            "needs_response": "open",
            "under_review": "under review",
            "won": "won",
            "lost": "lost (charged back)",
        }.get(self.dispute_status, self.dispute_status.replace("_", " "))

    @property
    def line_items(self) -> list[dict[str, Any]]:
        """The stored lines with their periods as datetimes again."""
        return [
            {
                **line,
                "period_start": _parse(line.get("period_start")),
                "period_end": _parse(line.get("period_end")),
            }
            for line in self.lines
        ]


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
