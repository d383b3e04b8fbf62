"""invoice.* events: keep the local copy of each invoice current (and let the lifecycle react)."""

from invoices.services import invoice_reversals_sync, invoice_sync
from payments.dispatch import handles
from payments.factory import get_gateway
from payments.gateway import object_id, parse_invoice
from payments.models import WebhookEvent


@handles(
    "invoice.created",
    "invoice.finalized",
    "invoice.updated",
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "invoice.payment_action_required",
    "invoice.voided",
    "invoice.marked_uncollectible",
    # The draft stays a draft with its last_finalization_error: overdue, staff alerted once
    # (invoices.receivers, dunning.lifecycle).
    "invoice.finalization_failed",
)
def invoice_event(event: WebhookEvent) -> None:
    """Idempotent and order-tolerant: the event's `created` with the invoice's own progress
    (status, attempts) decides whether it is newer than the stored copy."""
    invoice_sync(invoice=parse_invoice(event.object), observed_at=event.created)


@handles("charge.refunded", "refund.created", "refund.updated", "refund.failed")
def refund_changed(event: WebhookEvent) -> None:
    """The invoice a refunded payment paid shows how much went back (all its refunds, read
    again from the gateway)."""
    payment_intent = object_id(event.object.get("payment_intent"))
    if not payment_intent:
        return
    gateway = get_gateway()
    invoice_id = gateway.payment_invoice_id(payment_intent=payment_intent)
    if invoice_id:
        invoice_reversals_sync(
            gateway_invoice_id=invoice_id,
            refunds=gateway.refund_list(payment_intent=payment_intent),
            dispute=None,
        )


@handles(
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
    "charge.dispute.closed",
)
def dispute_changed(event: WebhookEvent) -> None:
    """The invoice shows its dispute as the gateway has it now; one lost is owed again."""
    gateway = get_gateway()
    dispute = gateway.dispute_retrieve(dispute_id=str(event.object.get("id") or ""))
    invoice_id = gateway.payment_invoice_id(payment_intent=dispute.payment_intent)
    if invoice_id:
        invoice_reversals_sync(
            gateway_invoice_id=invoice_id,
            refunds=gateway.refund_list(payment_intent=dispute.payment_intent),
            dispute=dispute,
        )
