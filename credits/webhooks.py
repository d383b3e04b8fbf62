"""Purchases reported by the gateway's events. Each only credits what is not credited yet; refunds
and disputes of purchases take their credits back, once per refund or dispute id."""

from credits.services import (
    purchase_checkout_payment_record,
    purchase_dispute_record,
    purchase_for_payment,
    purchase_id_in,
    purchase_invoice_record,
    purchase_mark_paid,
    purchase_refund_record,
)
from payments.dispatch import handles
from payments.factory import get_gateway
from payments.gateway import object_id, parse_checkout_session, parse_invoice
from payments.models import WebhookEvent


@handles("invoice.paid")
def invoice_paid(event: WebhookEvent) -> None:
    invoice = parse_invoice(event.object)
    if (purchase_id := purchase_id_in(invoice.metadata)) is not None:
        purchase_invoice_record(purchase_id=purchase_id, invoice=invoice)
        purchase_mark_paid(purchase_id=purchase_id, invoice_id=invoice.id)


@handles("checkout.session.completed", "checkout.session.async_payment_succeeded")
def checkout_paid(event: WebhookEvent) -> None:
    session = parse_checkout_session(event.object)
    purchase_id = purchase_id_in(session.metadata)
    if purchase_id is None or session.payment_status != "paid":
        return
    # Checkout saved the card; make it the one future purchases and top-ups charge.
    get_gateway().checkout_session_save_card(session_id=session.id)
    purchase_checkout_payment_record(purchase_id=purchase_id, payment_intent=session.payment_intent)
    purchase_mark_paid(purchase_id=purchase_id, invoice_id=session.invoice)


@handles("charge.refunded", "refund.created", "refund.updated", "refund.failed")
def refund_changed(event: WebhookEvent) -> None:
    """Whatever the event (the charge, or one refund), every refund of its payment is read again
    from the gateway and recorded by its id: any order, any repeat, the same entries. A partial
    refund takes back its part; a failed one gives it back."""
    payment_intent = object_id(event.object.get("payment_intent"))
    purchase = purchase_for_payment(payment_intent=payment_intent)
    if purchase is None:
        return
    for refund in get_gateway().refund_list(payment_intent=payment_intent):
        purchase_refund_record(purchase=purchase, refund=refund)


@handles(
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
    "charge.dispute.closed",
)
def dispute_changed(event: WebhookEvent) -> None:
    """The dispute as the gateway has it now decides (a late `created` after `closed` changes
    nothing more)."""
    dispute = get_gateway().dispute_retrieve(dispute_id=str(event.object.get("id") or ""))
    purchase = purchase_for_payment(payment_intent=dispute.payment_intent)
    if purchase is not None:
        purchase_dispute_record(purchase=purchase, dispute=dispute)
