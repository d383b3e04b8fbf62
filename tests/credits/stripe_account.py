"""A Stripe account behind `StripeGateway`, for the tests that run the product on its Stripe
path: a stateful `stripe.HTTPClient` that keeps the objects the product meets by id and answers
the requests the library sends (create, retrieve with `expand`, list with filters, update) the
way Stripe's API does, with Stripe's shapes (current API, as in the shared objects.json). The
test plays Stripe's side with its helpers (a Checkout paid, a refund made in the dashboard, a
cardholder's dispute), each returning the events Stripe sends for it, signed and posted by the
test to /stripe/webhook/. No network."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import stripe

from payments.stripe_gateway import STRIPE_API_VERSION
from tests.payments.test_stripe_gateway import decode_form, stripe_list

Json = dict[str, Any]


def _missing(kind: str, object_id: str) -> tuple[int, Json]:
    return 404, {
        "error": {
            "type": "invalid_request_error",
            "code": "resource_missing",
            "message": f"No such {kind}: '{object_id}'",
            "doc_url": "https://stripe.com/docs/error-codes/resource-missing",
        }
    }


class StripeAccount(stripe.HTTPClient):
    name = "stateful-fake"

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[str, Json] = {}
        self.sent: list[tuple[str, str, Json]] = []
        self._serial = 0

    # The HTTP boundary

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[str, int, Mapping[str, str]]:
        parts = urlsplit(url)
        assert parts.netloc == "api.stripe.com"
        assert (headers or {}).get("Stripe-Version") == STRIPE_API_VERSION
        params = decode_form((post_data if method == "post" else parts.query) or "")
        self.sent.append((method, parts.path, params))
        status, body = self._answer(method, parts.path.removeprefix("/v1/"), params)
        return json.dumps(body), status, {"Request-Id": f"req_fake{len(self.sent):04d}"}

    def close(self) -> None:
        pass

    def _answer(self, method: str, path: str, params: Json) -> tuple[int, Json]:
        routes = [
            ("post", r"customers", self._customer_create),
            ("get", r"customers/(?P<id>[^/]+)", self._customer_retrieve),
            ("post", r"customers/(?P<id>[^/]+)", self._customer_update),
            ("post", r"checkout/sessions", self._session_create),
            ("get", r"checkout/sessions/(?P<id>[^/]+)", self._session_retrieve),
            ("get", r"invoice_payments", self._invoice_payments),
            ("get", r"invoices/(?P<id>[^/]+)", self._retrieve("invoice")),
            ("get", r"refunds", self._refunds),
            ("get", r"disputes/(?P<id>[^/]+)", self._retrieve("dispute")),
        ]
        for verb, pattern, handler in routes:
            if verb == method and (match := re.fullmatch(pattern, path)):
                return handler(params, **match.groupdict())
        raise AssertionError(f"the fake Stripe has no answer for {method.upper()} /v1/{path}")

    # Objects

    def new_id(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}_1KiloFake{self._serial:014d}"

    def now(self) -> int:
        return int(time.time())

    def keep(self, obj: Json) -> Json:
        self.objects[obj["id"]] = obj
        return obj

    def _retrieve(self, kind: str) -> Any:
        def answer(params: Json, id: str) -> tuple[int, Json]:
            obj = self.objects.get(id)
            if obj is None or obj["object"] != kind:
                return _missing(kind, id)
            return 200, obj

        return answer

    def _customer_create(self, params: Json) -> tuple[int, Json]:
        customer = {
            "id": self.new_id("cus"),
            "object": "customer",
            "created": self.now(),
            "email": params.get("email"),
            "name": params.get("name"),
            "metadata": params.get("metadata") or {},
            "invoice_settings": {"default_payment_method": None},
            "livemode": False,
        }
        return 200, self.keep(customer)

    def _customer_retrieve(self, params: Json, id: str) -> tuple[int, Json]:
        customer = self.objects.get(id)
        if customer is None:
            return _missing("customer", id)
        if "invoice_settings.default_payment_method" in (params.get("expand") or []):
            default = customer["invoice_settings"]["default_payment_method"]
            settings = {
                **customer["invoice_settings"],
                "default_payment_method": self.objects.get(default),
            }
            return 200, {**customer, "invoice_settings": settings}
        return 200, customer

    def _customer_update(self, params: Json, id: str) -> tuple[int, Json]:
        customer = self.objects.get(id)
        if customer is None:
            return _missing("customer", id)
        customer["invoice_settings"].update(params.get("invoice_settings") or {})
        return 200, customer

    def _session_create(self, params: Json) -> tuple[int, Json]:
        session_id = self.new_id("cs_test_a")
        item = params["line_items"][0]
        session = {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": int(item["price_data"]["unit_amount"]),
            "amount_total": int(item["price_data"]["unit_amount"]),
            "cancel_url": params["cancel_url"],
            "created": self.now(),
            "currency": item["price_data"]["currency"],
            "customer": params["customer"],
            "expires_at": self.now() + 86400,
            "invoice": None,
            "invoice_creation": params.get("invoice_creation"),
            "livemode": False,
            "metadata": params.get("metadata") or {},
            "mode": params["mode"],
            "payment_intent": None,
            "payment_status": "unpaid",
            "status": "open",
            "subscription": None,
            "success_url": params["success_url"],
            "ui_mode": "hosted",
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
        }
        return 200, self.keep(session)

    def _session_retrieve(self, params: Json, id: str) -> tuple[int, Json]:
        session = self.objects.get(id)
        if session is None:
            return _missing("checkout.session", id)
        expand = params.get("expand") or []
        answer = dict(session)
        if {"payment_intent", "payment_intent.payment_method"} & set(expand) and (
            intent := self.objects.get(session["payment_intent"] or "")
        ):
            answer["payment_intent"] = dict(intent)
            if "payment_intent.payment_method" in expand:
                answer["payment_intent"]["payment_method"] = self.objects[intent["payment_method"]]
        return 200, answer

    def _invoice_payments(self, params: Json) -> tuple[int, Json]:
        intent = (params.get("payment") or {}).get("payment_intent")
        found = [
            obj
            for obj in self.objects.values()
            if obj["object"] == "invoice_payment"
            and (intent is None or obj["payment"]["payment_intent"] == intent)
            and ("invoice" not in params or obj["invoice"] == params["invoice"])
            and ("status" not in params or obj["status"] == params["status"])
        ]
        return 200, stripe_list(found[: int(params.get("limit") or 10)], "/v1/invoice_payments")

    def _refunds(self, params: Json) -> tuple[int, Json]:
        found = [
            obj
            for obj in self.objects.values()
            if obj["object"] == "refund" and obj["payment_intent"] == params.get("payment_intent")
        ]
        found.sort(key=lambda refund: (refund["created"], refund["id"]), reverse=True)
        return 200, stripe_list(found, "/v1/refunds")

    # Stripe's side of the story: what happens there, and the events it sends

    def event(self, event_type: str, obj: Json) -> Json:
        return {
            "id": self.new_id("evt"),
            "object": "event",
            "api_version": STRIPE_API_VERSION,
            "created": self.now(),
            "data": {"object": json.loads(json.dumps(obj))},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }

    def checkout_paid(self, session_id: str) -> list[Json]:
        """The buyer pays the Checkout with a card: the payment, its charge, the post-payment
        invoice (https://docs.stripe.com/payments/checkout/post-payment-invoices) and the session
        completed. Returns the events, in the order Stripe usually sends them."""
        session = self.objects[session_id]
        amount = session["amount_total"]
        card = self.keep(
            {
                "id": self.new_id("pm"),
                "object": "payment_method",
                "type": "card",
                "card": {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2040},
                "customer": session["customer"],
                "created": self.now(),
                "livemode": False,
                "metadata": {},
            }
        )
        intent = self.keep(
            {
                "id": self.new_id("pi"),
                "object": "payment_intent",
                "amount": amount,
                "amount_received": amount,
                "currency": "usd",
                "customer": session["customer"],
                "latest_charge": None,
                "payment_method": card["id"],
                "status": "succeeded",
                "metadata": session["metadata"],
            }
        )
        charge = self.keep(
            {
                "id": self.new_id("ch"),
                "object": "charge",
                "amount": amount,
                "amount_captured": amount,
                "amount_refunded": 0,
                "captured": True,
                "created": self.now(),
                "currency": "usd",
                "customer": session["customer"],
                "disputed": False,
                "livemode": False,
                "metadata": {},
                "paid": True,
                "payment_intent": intent["id"],
                "payment_method": card["id"],
                "refunded": False,
                "status": "succeeded",
            }
        )
        intent["latest_charge"] = charge["id"]
        invoice_data = (session.get("invoice_creation") or {}).get("invoice_data") or {}
        invoice_id = self.new_id("in")
        invoice = self.keep(
            {
                "id": invoice_id,
                "object": "invoice",
                "amount_due": amount,
                "amount_paid": amount,
                "amount_remaining": 0,
                "attempt_count": 1,
                "billing_reason": "manual",
                "collection_method": "charge_automatically",
                "created": self.now(),
                "currency": "usd",
                "customer": session["customer"],
                "description": invoice_data.get("description"),
                "hosted_invoice_url": f"https://invoice.stripe.com/i/acct_1Kilo/test_{invoice_id}",
                "invoice_pdf": f"https://pay.stripe.com/invoice/acct_1Kilo/test_{invoice_id}/pdf",
                "lines": stripe_list([], f"/v1/invoices/{invoice_id}/lines"),
                "livemode": False,
                "metadata": invoice_data.get("metadata") or {},
                "next_payment_attempt": None,
                "number": f"KILO-{self._serial:04d}",
                "parent": None,
                "period_end": self.now(),
                "period_start": self.now(),
                "status": "paid",
                "status_transitions": {
                    "finalized_at": self.now(),
                    "marked_uncollectible_at": None,
                    "paid_at": self.now(),
                    "voided_at": None,
                },
                "subtotal": amount,
                "total": amount,
            }
        )
        self.keep(
            {
                "id": self.new_id("inpay"),
                "object": "invoice_payment",
                "amount_paid": amount,
                "amount_requested": amount,
                "created": self.now(),
                "currency": "usd",
                "invoice": invoice_id,
                "is_default": True,
                "livemode": False,
                "payment": {"type": "payment_intent", "payment_intent": intent["id"]},
                "status": "paid",
                "status_transitions": {"canceled_at": None, "paid_at": self.now()},
            }
        )
        session.update(
            status="complete",
            payment_status="paid",
            payment_intent=intent["id"],
            invoice=invoice_id,
        )
        session["url"] = None
        return [
            self.event("payment_intent.succeeded", intent),
            self.event("charge.succeeded", charge),
            self.event("invoice.created", invoice),
            self.event("invoice.finalized", invoice),
            self.event("invoice.paid", invoice),
            self.event("checkout.session.completed", session),
        ]

    def checkout_expired(self, session_id: str) -> list[Json]:
        """Nobody paid within 24 hours: `checkout.session.expired`."""
        session = self.objects[session_id]
        session.update(status="expired", url=None)
        return [self.event("checkout.session.expired", session)]

    def checkout_by_bank_debit(self, session_id: str) -> list[Json]:
        """The buyer pays with a US bank account (ACH Direct Debit, a delayed notification
        method): the session completes unpaid while the payment is processing
        (https://docs.stripe.com/checkout/fulfillment#delayed-notification)."""
        session = self.objects[session_id]
        account = self.keep(
            {
                "id": self.new_id("pm"),
                "object": "payment_method",
                "type": "us_bank_account",
                "us_bank_account": {"bank_name": "STRIPE TEST BANK", "last4": "2227"},
                "customer": session["customer"],
                "created": self.now(),
                "livemode": False,
                "metadata": {},
            }
        )
        intent = self.keep(
            {
                "id": self.new_id("pi"),
                "object": "payment_intent",
                "amount": session["amount_total"],
                "amount_received": 0,
                "currency": "usd",
                "customer": session["customer"],
                "last_payment_error": None,
                "payment_method": account["id"],
                "payment_method_types": ["us_bank_account"],
                "status": "processing",
                "metadata": session["metadata"],
            }
        )
        session.update(status="complete", payment_status="unpaid", payment_intent=intent["id"])
        session["url"] = None
        return [
            self.event("payment_intent.processing", intent),
            self.event("checkout.session.completed", session),
        ]

    def bank_debit_failed(self, session_id: str) -> list[Json]:
        """Days later the bank refuses the debit: `checkout.session.async_payment_failed`."""
        session = self.objects[session_id]
        intent = self.objects[session["payment_intent"]]
        intent.update(
            status="requires_payment_method",
            last_payment_error={
                "type": "invalid_request_error",
                "code": "payment_method_insufficient_funds",
                "message": "The customer's account has insufficient funds to cover this payment.",
            },
        )
        return [
            self.event("payment_intent.payment_failed", intent),
            self.event("checkout.session.async_payment_failed", session),
        ]

    def charge_of(self, payment_intent: str) -> Json:
        return next(
            obj
            for obj in self.objects.values()
            if obj["object"] == "charge" and obj["payment_intent"] == payment_intent
        )

    def refund(self, payment_intent: str, amount: int, status: str = "succeeded") -> list[Json]:
        """A refund made in Stripe's dashboard: `charge.refunded` and `refund.created`."""
        charge = self.charge_of(payment_intent)
        refund = self.keep(
            {
                "id": self.new_id("re"),
                "object": "refund",
                "amount": amount,
                "balance_transaction": None,
                "charge": charge["id"],
                "created": self.now(),
                "currency": "usd",
                "metadata": {},
                "payment_intent": payment_intent,
                "reason": "requested_by_customer",
                "status": status,
            }
        )
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        return [self.event("charge.refunded", charge), self.event("refund.created", refund)]

    def dispute(self, payment_intent: str, amount: int) -> list[Json]:
        """A cardholder's chargeback: `charge.dispute.created`, then the funds withdrawn."""
        charge = self.charge_of(payment_intent)
        dispute = self.keep(
            {
                "id": self.new_id("du"),
                "object": "dispute",
                "amount": amount,
                "balance_transactions": [],
                "charge": charge["id"],
                "created": self.now(),
                "currency": "usd",
                "evidence_details": {"due_by": self.now() + 21 * 86400, "has_evidence": False},
                "is_charge_refundable": False,
                "livemode": False,
                "metadata": {},
                "payment_intent": payment_intent,
                "reason": "fraudulent",
                "status": "needs_response",
            }
        )
        charge["disputed"] = True
        return [
            self.event("charge.dispute.created", dispute),
            self.event("charge.dispute.funds_withdrawn", dispute),
        ]
