"""Purchases reported by the gateway's events. Each only credits what is not credited yet."""

from credits.models import Purchase
from credits.services import purchase_invoice_record, purchase_mark_paid
from payments.dispatch import handles
from payments.gateway import get_gateway, parse_checkout_session, parse_invoice
from payments.models import WebhookEvent

PURCHASE_KINDS = {Purchase.Kind.CREDIT_PURCHASE, Purchase.Kind.AUTO_TOPUP}


def _purchase_id(metadata: dict[str, str]) -> int | None:
    if metadata.get("kind") not in PURCHASE_KINDS:
        return None
    try:
        return int(metadata["purchase_id"])
    except (KeyError, ValueError):
        return None


@handles("invoice.paid")
def invoice_paid(event: WebhookEvent) -> None:
    invoice = parse_invoice(event.object)
    if (purchase_id := _purchase_id(invoice.metadata)) is not None:
        purchase_invoice_record(purchase_id=purchase_id, invoice=invoice)
        purchase_mark_paid(purchase_id=purchase_id, invoice_id=invoice.id)


@handles("checkout.session.completed", "checkout.session.async_payment_succeeded")
def checkout_paid(event: WebhookEvent) -> None:
    session = parse_checkout_session(event.object)
    purchase_id = _purchase_id(session.metadata)
    if purchase_id is None or session.payment_status != "paid":
        return
    # Checkout saved the card; make it the one future purchases and top-ups charge.
    get_gateway().checkout_session_save_card(session_id=session.id)
    purchase_mark_paid(purchase_id=purchase_id, invoice_id=session.invoice)
