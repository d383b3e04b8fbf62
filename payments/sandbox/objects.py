"""The sandbox's state as Stripe-shaped objects (current API: see shared/stripe/objects.json)."""

from datetime import datetime
from typing import Any

from django.conf import settings
from django.urls import reverse

from payments.sandbox.models import (
    SandboxCheckoutSession,
    SandboxCustomer,
    SandboxDispute,
    SandboxInvoice,
    SandboxPaymentMethod,
    SandboxPrice,
    SandboxRefund,
    SandboxSubscription,
)

API_VERSION = "2026-08-27.sandbox"


def ts(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value else None


def site_url(name: str, *args: str) -> str:
    return settings.SITE_URL + reverse(name, args=args)


def customer_json(customer: SandboxCustomer) -> dict[str, Any]:
    address = {
        key: customer.address.get(key) or None
        for key in ("city", "country", "line1", "line2", "postal_code", "state")
    }
    return {
        "id": customer.id,
        "object": "customer",
        "address": address,
        "balance": 0,
        "created": ts(customer.created),
        "currency": "usd",
        "delinquent": False,
        "email": customer.email or None,
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": customer.default_payment_method_id,
            "footer": None,
        },
        "livemode": False,
        "metadata": customer.metadata,
        "name": customer.name or None,
        "tax_exempt": "none",
        "tax_ids": {
            "object": "list",
            "data": [{"object": "tax_id", **tax_id} for tax_id in customer.tax_ids],
        },
        "test_clock": None,
    }


def _bank_account(payment_method: SandboxPaymentMethod) -> dict[str, Any]:
    return {
        "account_holder_type": "individual",
        "account_type": "checking",
        "bank_name": payment_method.brand,
        "last4": payment_method.last4,
        "routing_number": "110000000",
    }


def _card(payment_method: SandboxPaymentMethod) -> dict[str, Any]:
    return {
        "brand": payment_method.brand,
        "display_brand": payment_method.brand,
        "country": "US",
        "exp_month": payment_method.exp_month,
        "exp_year": payment_method.exp_year,
        "funding": "credit",
        "last4": payment_method.last4,
    }


def payment_method_json(payment_method: SandboxPaymentMethod) -> dict[str, Any]:
    """A card, or a US bank account (ACH Direct Debit) given at Checkout."""
    bank = payment_method.type == SandboxPaymentMethod.Type.US_BANK_ACCOUNT
    return {
        "id": payment_method.id,
        "object": "payment_method",
        "billing_details": {"address": None, "email": None, "name": None, "phone": None},
        **(
            {"us_bank_account": _bank_account(payment_method)}
            if bank
            else {"card": _card(payment_method)}
        ),
        "created": ts(payment_method.created),
        "customer": payment_method.customer_id,
        "livemode": False,
        "metadata": {},
        "type": payment_method.type,
    }


def price_json(price: SandboxPrice) -> dict[str, Any]:
    return {
        "id": price.id,
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": ts(price.created),
        "currency": price.currency,
        "livemode": False,
        "lookup_key": price.lookup_key,
        "metadata": {},
        "nickname": None,
        "product": f"prod_{price.id.removeprefix('price_')}",
        "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"},
        "type": "recurring",
        "unit_amount": price.unit_amount,
        "unit_amount_decimal": str(price.unit_amount),
    }


def subscription_json(subscription: SandboxSubscription) -> dict[str, Any]:
    item = {
        "id": subscription.item_id,
        "object": "subscription_item",
        "created": ts(subscription.created),
        "current_period_start": ts(subscription.current_period_start),
        "current_period_end": ts(subscription.current_period_end),
        "metadata": {},
        "price": price_json(subscription.price),
        "quantity": subscription.quantity,
        "subscription": subscription.id,
    }
    pending = None
    if subscription.pending_quantity is not None:
        pending = {
            "billing_cycle_anchor": None,
            "expires_at": ts(subscription.pending_expires_at),
            "subscription_items": [
                {"id": subscription.item_id, "quantity": subscription.pending_quantity}
            ],
        }
    return {
        "id": subscription.id,
        "object": "subscription",
        "billing_cycle_anchor": ts(subscription.billing_cycle_anchor),
        "cancel_at": ts(subscription.current_period_end)
        if subscription.cancel_at_period_end
        else None,
        "cancel_at_period_end": subscription.cancel_at_period_end,
        "canceled_at": ts(subscription.canceled_at),
        "collection_method": "charge_automatically",
        "created": ts(subscription.created),
        "currency": subscription.price.currency,
        "customer": subscription.customer_id,
        "default_payment_method": subscription.default_payment_method_id,
        "ended_at": ts(subscription.ended_at),
        "items": {"object": "list", "data": [item], "has_more": False},
        "latest_invoice": subscription.latest_invoice_id,
        "livemode": False,
        "metadata": subscription.metadata,
        "pending_update": pending,
        "start_date": ts(subscription.created),
        "status": subscription.status,
    }


def invoice_json(invoice: SandboxInvoice) -> dict[str, Any]:
    finalized = invoice.status != "draft"
    parent = None
    if invoice.subscription_id:
        parent = {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {
                "metadata": invoice.subscription.metadata if invoice.subscription else {},
                "subscription": invoice.subscription_id,
            },
        }
    return {
        "id": invoice.id,
        "object": "invoice",
        "account_country": "US",
        "account_name": "Kilo Billing (sandbox)",
        "amount_due": invoice.amount_due,
        "amount_paid": invoice.amount_paid,
        "amount_remaining": invoice.amount_due - invoice.amount_paid,
        "attempt_count": invoice.attempt_count,
        "attempted": invoice.attempt_count > 0,
        "auto_advance": invoice.auto_advance and invoice.status in ("draft", "open"),
        "billing_reason": invoice.billing_reason,
        "collection_method": "charge_automatically",
        "created": ts(invoice.created),
        "currency": invoice.currency,
        "customer": invoice.customer_id,
        "customer_email": invoice.customer.email or None,
        "customer_name": invoice.customer.name or None,
        "description": invoice.description or None,
        "hosted_invoice_url": site_url("sandbox_invoice", invoice.id) if finalized else None,
        "invoice_pdf": site_url("sandbox_invoice_pdf", invoice.id) if finalized else None,
        "last_finalization_error": {
            "type": "invalid_request_error",
            "code": invoice.last_finalization_error_code,
            "message": invoice.last_finalization_error,
            "doc_url": "https://docs.stripe.com/error-codes/"
            + invoice.last_finalization_error_code.replace("_", "-"),
        }
        if invoice.last_finalization_error_code
        else None,
        "lines": {
            "object": "list",
            "data": invoice.lines,
            "has_more": False,
            "total_count": len(invoice.lines),
        },
        "livemode": False,
        "metadata": invoice.metadata,
        "next_payment_attempt": ts(invoice.next_payment_attempt),
        "number": invoice.number or None,
        "parent": parent,
        "period_start": ts(invoice.period_start),
        "period_end": ts(invoice.period_end),
        "status": invoice.status,
        "status_transitions": {
            "finalized_at": ts(invoice.finalized_at),
            "marked_uncollectible_at": ts(invoice.marked_uncollectible_at),
            "paid_at": ts(invoice.paid_at),
            "voided_at": ts(invoice.voided_at),
        },
        "subtotal": invoice.amount_due,
        "total": invoice.amount_due,
    }


def invoice_line(
    *,
    line_id: str,
    description: str,
    amount: int,
    quantity: int,
    period_start: datetime,
    period_end: datetime,
    subscription: SandboxSubscription | None = None,
    proration: bool = False,
    currency: str = "usd",
) -> dict[str, Any]:
    if subscription is not None:
        currency = subscription.price.currency
        parent = {
            "type": "subscription_item_details",
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None,
                "proration": proration,
                "proration_details": {"credited_items": None},
                "subscription": subscription.id,
                "subscription_item": subscription.item_id,
            },
        }
    else:
        parent = {
            "type": "invoice_item_details",
            "invoice_item_details": {"invoice_item": f"ii_{line_id[3:]}", "proration": False},
            "subscription_item_details": None,
        }
    return {
        "id": line_id,
        "object": "line_item",
        "amount": amount,
        "currency": currency,
        "description": description,
        "livemode": False,
        "metadata": {},
        "parent": parent,
        "period": {"start": ts(period_start), "end": ts(period_end)},
        "pricing": {
            "type": "price_details",
            "price_details": {"price": subscription.price_id if subscription else None},
            "unit_amount_decimal": str(amount // max(quantity, 1)),
        },
        "quantity": quantity,
    }


def invoiceitem_json(
    customer_id: str, line: dict[str, Any], metadata: dict[str, str], at: datetime
) -> dict[str, Any]:
    """A pending invoice item, as announced before the invoice that will hold it exists."""
    return {
        "id": line["parent"]["invoice_item_details"]["invoice_item"],
        "object": "invoiceitem",
        "amount": line["amount"],
        "currency": line["currency"],
        "customer": customer_id,
        "date": ts(at),
        "description": line["description"],
        "invoice": None,
        "livemode": False,
        "metadata": metadata,
        "period": line["period"],
        "proration": False,
        "quantity": 1,
    }


def payment_intent_json(
    *,
    id: str,
    amount: int,
    amount_received: int,
    currency: str,
    customer_id: str,
    status: str,
    created: datetime | None,
    payment_method_id: str | None = None,
    latest_charge: str = "",
    description: str = "",
    metadata: dict[str, str] | None = None,
    error: dict[str, Any] | None = None,
    payment_method_types: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "id": id,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount_received,
        "capture_method": "automatic",
        "created": ts(created),
        "currency": currency,
        "customer": customer_id,
        "description": description or None,
        "last_payment_error": error,
        "latest_charge": latest_charge or None,
        "livemode": False,
        "metadata": metadata or {},
        # Stripe.js would handle it; the sandbox sends the payer to its authentication page.
        "next_action": {"type": "use_stripe_sdk", "use_stripe_sdk": {}}
        if status == "requires_action"
        else None,
        "payment_method": payment_method_id,
        "payment_method_types": payment_method_types or ["card"],
        "status": status,
    }


def invoice_payment_intent_json(
    invoice: SandboxInvoice, *, error: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The PaymentIntent Stripe created when it finalized the invoice."""
    return payment_intent_json(
        id=invoice.payment_intent,
        amount=invoice.amount_due,
        amount_received=invoice.amount_paid,
        currency=invoice.currency,
        customer_id=invoice.customer_id,
        status=invoice.payment_intent_status or "requires_payment_method",
        created=invoice.finalized_at or invoice.created,
        payment_method_id=invoice.attempt_payment_method_id,
        latest_charge=invoice.charge,
        description=invoice.description,
        error=error,
    )


def invoice_payment_json(invoice: SandboxInvoice) -> dict[str, Any]:
    """The InvoicePayment that links the invoice to the payment that paid it."""
    paid = invoice.status == "paid"
    return {
        "id": f"inpay_{invoice.id.removeprefix('in_')}",
        "object": "invoice_payment",
        "amount_paid": invoice.amount_paid if paid else None,
        "amount_requested": invoice.amount_due,
        "created": ts(invoice.finalized_at or invoice.created),
        "currency": invoice.currency,
        "invoice": invoice.id,
        "is_default": True,
        "livemode": False,
        "payment": {"type": "payment_intent", "payment_intent": invoice.payment_intent},
        "status": "paid" if paid else "open",
        "status_transitions": {"canceled_at": None, "paid_at": ts(invoice.paid_at)},
    }


def charge_json(
    invoice: SandboxInvoice,
    *,
    failure: dict[str, Any] | None = None,
    card: SandboxPaymentMethod | None = None,
) -> dict[str, Any]:
    """The invoice's charge. Since API 2022-11-15 a Charge does not carry its refunds (they are
    listed apart), and since 2025-03-31 not its invoice either."""
    card = card or invoice.attempt_payment_method
    failed = failure is not None
    amount = invoice.amount_due if failed else invoice.amount_paid
    disputed = invoice.disputes.exists() if not failed else False
    return {
        "id": invoice.charge if not failed else f"ch_failed_{invoice.payment_intent[3:]}",
        "object": "charge",
        "amount": amount,
        "amount_captured": 0 if failed else amount,
        "amount_refunded": invoice.amount_refunded,
        "balance_transaction": None,
        "captured": not failed,
        "created": ts(invoice.paid_at or invoice.finalized_at or invoice.created),
        "currency": invoice.currency,
        "customer": invoice.customer_id,
        "description": invoice.description or None,
        "disputed": disputed,
        "failure_code": failure.get("code") if failure else None,
        "failure_message": failure.get("message") if failure else None,
        "livemode": False,
        "metadata": {},
        "outcome": {
            "network_status": "declined_by_network" if failed else "approved_by_network",
            "reason": failure.get("decline_code") if failure else None,
            "type": "issuer_declined" if failed else "authorized",
        },
        "paid": not failed,
        "payment_intent": invoice.payment_intent,
        "payment_method": card.id if card else None,
        "payment_method_details": _payment_method_details(card),
        "refunded": not failed and invoice.amount_refunded >= invoice.amount_paid > 0,
        "status": "failed" if failed else "succeeded",
    }


def _payment_method_details(card: SandboxPaymentMethod | None) -> dict[str, Any]:
    if card is not None and card.type == SandboxPaymentMethod.Type.US_BANK_ACCOUNT:
        return {"type": "us_bank_account", "us_bank_account": _bank_account(card)}
    return {
        "card": {
            "brand": card.brand if card else None,
            "last4": card.last4 if card else None,
            "exp_month": card.exp_month if card else None,
            "exp_year": card.exp_year if card else None,
        },
        "type": "card",
    }


def refund_json(refund: SandboxRefund) -> dict[str, Any]:
    invoice = refund.invoice
    return {
        "id": refund.id,
        "object": "refund",
        "amount": refund.amount,
        "balance_transaction": None,
        "charge": invoice.charge,
        "created": ts(refund.created),
        "currency": invoice.currency,
        "failure_reason": refund.failure_reason or None,
        "metadata": refund.metadata,
        "payment_intent": invoice.payment_intent,
        "reason": refund.reason or None,
        "status": refund.status,
    }


def dispute_json(dispute: SandboxDispute) -> dict[str, Any]:
    invoice = dispute.invoice
    return {
        "id": dispute.id,
        "object": "dispute",
        "amount": dispute.amount,
        "balance_transactions": [],
        "charge": invoice.charge,
        "created": ts(dispute.created),
        "currency": invoice.currency,
        "evidence_details": {
            "due_by": ts(dispute.created) + 21 * 86400,  # type: ignore[operator]
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
        "payment_intent": invoice.payment_intent,
        "reason": dispute.reason,
        "status": dispute.status,
    }


def checkout_session_json(session: SandboxCheckoutSession) -> dict[str, Any]:
    return {
        "id": session.id,
        "object": "checkout.session",
        "amount_subtotal": session.amount,
        "amount_total": session.amount,
        "cancel_url": session.cancel_url,
        "created": ts(session.created),
        "currency": session.currency,
        "customer": session.customer_id,
        "expires_at": ts(session.expires_at),
        "invoice": session.invoice_id,
        "livemode": False,
        "metadata": session.metadata,
        "mode": session.mode,
        "payment_intent": session.payment_intent or None,
        "payment_method_types": ["card", "us_bank_account"]
        if session.mode == "payment" and session.currency == "usd"
        else ["card"],
        "payment_status": session.payment_status,
        "status": session.status,
        "subscription": session.subscription_id,
        "success_url": session.success_url,
        "url": site_url("sandbox_checkout", session.id) if session.status == "open" else None,
    }
