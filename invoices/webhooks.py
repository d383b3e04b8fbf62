"""invoice.* events: keep the local copy of each invoice current (and let the lifecycle react)."""

from payments.dispatch import handles
from payments.gateway import parse_invoice
from payments.models import WebhookEvent


@handles(
    "invoice.created",
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_failed",
    "invoice.payment_action_required",
    "invoice.voided",
    "invoice.marked_uncollectible",
)
def invoice_event(event: WebhookEvent) -> None:
    """Idempotent and order-tolerant: the event's `created` with the invoice's own progress
    (status, attempts) decides whether it is newer than the stored copy."""
    from invoices.services import invoice_sync

    invoice_sync(invoice=parse_invoice(event.object), observed_at=event.created)
