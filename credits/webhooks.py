"""Purchases reported by the gateway's events. Each only credits what is not credited yet; refunds
and disputes of purchases take their credits back, once per refund or dispute id; a Checkout that
expires or whose bank debit fails ends its purchase, once, if it is still waiting."""

import re
from typing import Any

from credits.services import (
    purchase_checkout_expired,
    purchase_checkout_failed,
    purchase_checkout_payment_record,
    purchase_checkout_processing,
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

# What a Stripe object id looks like (`pi_…`, `cs_test_…`, `du_…`): anything else in an event is
# not an object the gateway could know, and is not asked about.
_GATEWAY_ID = re.compile(r"[A-Za-z0-9_]{3,255}")


def _gateway_id(value: object) -> str:
    text = object_id(value)
    return text if _GATEWAY_ID.fullmatch(text) else ""


def _purchase_id(obj: dict[str, Any]) -> int | None:
    """The purchase an invoice or a Checkout session of the event was made for; None for
    anything else, absurd shapes included (those are not ours)."""
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict) or not _gateway_id(obj.get("id")):
        return None
    return purchase_id_in({str(key): str(value) for key, value in metadata.items()})


@handles("invoice.paid")
def invoice_paid(event: WebhookEvent) -> None:
    if (purchase_id := _purchase_id(event.object)) is not None:
        invoice = parse_invoice(event.object)
        purchase_invoice_record(purchase_id=purchase_id, invoice=invoice)
        purchase_mark_paid(purchase_id=purchase_id, invoice_id=invoice.id)


@handles("checkout.session.completed", "checkout.session.async_payment_succeeded")
def checkout_paid(event: WebhookEvent) -> None:
    """Paid: credited. Completed unpaid (a bank debit, https://docs.stripe.com/checkout/fulfillment
    #delayed-notification): the purchase waits for the bank's answer."""
    if (purchase_id := _purchase_id(event.object)) is None:
        return
    session = parse_checkout_session(event.object)
    payment_intent = _gateway_id(session.payment_intent)
    if session.payment_status != "paid":
        if session.status == "complete":
            purchase_checkout_processing(session_id=session.id, payment_intent=payment_intent)
        return
    # Checkout saved the card; make it the one future purchases and top-ups charge.
    get_gateway().checkout_session_save_card(session_id=session.id)
    purchase_checkout_payment_record(purchase_id=purchase_id, payment_intent=payment_intent)
    purchase_mark_paid(purchase_id=purchase_id, invoice_id=session.invoice)


@handles("checkout.session.async_payment_failed")
def checkout_payment_failed(event: WebhookEvent) -> None:
    """The bank debit of a completed Checkout failed: its purchase ends as failed, once."""
    if session_id := _gateway_id(event.object.get("id")):
        purchase_checkout_failed(session_id=session_id)


@handles("checkout.session.expired")
def checkout_expired(event: WebhookEvent) -> None:
    """A Checkout nobody paid within 24 hours: its purchase ends as expired, once."""
    if session_id := _gateway_id(event.object.get("id")):
        purchase_checkout_expired(session_id=session_id)


@handles("charge.refunded", "refund.created", "refund.updated", "refund.failed")
def refund_changed(event: WebhookEvent) -> None:
    """Whatever the event (the charge, or one refund), every refund of its payment is read again
    from the gateway and recorded by its id: any order, any repeat, the same entries. A partial
    refund takes back its part; a failed one gives it back."""
    payment_intent = _gateway_id(event.object.get("payment_intent"))
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
    if not (dispute_id := _gateway_id(event.object.get("id"))):
        return
    dispute = get_gateway().dispute_retrieve(dispute_id=dispute_id)
    purchase = purchase_for_payment(payment_intent=_gateway_id(dispute.payment_intent))
    if purchase is not None:
        purchase_dispute_record(purchase=purchase, dispute=dispute)
