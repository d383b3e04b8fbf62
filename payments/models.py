from typing import Any

from django.db import models
from django.utils import timezone

from payments.sandbox.models import (  # noqa: F401 - registered with this app
    SandboxCheckoutSession,
    SandboxClock,
    SandboxCustomer,
    SandboxDispute,
    SandboxEvent,
    SandboxIdempotencyKey,
    SandboxInvoice,
    SandboxPaymentMethod,
    SandboxPrice,
    SandboxRefund,
    SandboxSubscription,
)


class WebhookEvent(models.Model):
    """A payment provider's event, stored raw before it is processed, once per event id."""

    class Status(models.TextChoices):
        PENDING = "pending"
        # Claimed by a worker until next_attempt_at; a worker that dies leaves the claim to lapse.
        PROCESSING = "processing"
        PROCESSED = "processed"
        FAILED = "failed"
        IGNORED = "ignored"
        # An error that waiting cannot heal, seen WEBHOOK_PERMANENT_ERROR_ATTEMPTS times: no more
        # automatic retries; staff look, and replay it once the cause is fixed.
        NEEDS_PERSON = "needs_person", "Needs a person"

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100, db_index=True)
    livemode = models.BooleanField(default=False)
    created = models.DateTimeField(help_text="When the provider created the event.")
    payload = models.JSONField()
    received_at = models.DateTimeField(default=timezone.now)
    deliveries = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # When the event is owed again: a failed one after its backoff, a pending one whose task
    # never ran, a processing one when its worker's claim lapses.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    permanent_failures = models.PositiveIntegerField(
        default=0, help_text="Attempts that failed with an error waiting cannot heal."
    )
    needs_person_since = models.DateTimeField(
        null=True, blank=True, help_text="When it was first set aside for a person (ADMINS told)."
    )

    class Meta:
        indexes = [
            # The retry sweep reads only events still owed processing.
            models.Index(
                fields=["next_attempt_at"],
                name="webhook_event_owed",
                condition=models.Q(status__in=["pending", "failed", "processing"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"

    @property
    def object(self) -> dict[str, Any]:
        obj: dict[str, Any] = self.payload.get("data", {}).get("object", {})
        return obj
