"""StripeGateway at the HTTP boundary: a fake `stripe.HTTPClient` records what the library sends
(method, path, decoded form parameters, Idempotency-Key, Stripe-Version) and answers with canned
Stripe-shaped JSON. No network, no database."""

from __future__ import annotations

import json
import re
import socket
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import stripe

from payments.gateway import (
    Address,
    CardError,
    CheckoutSession,
    Customer,
    CustomerDetails,
    Dispute,
    GatewayError,
    Invoice,
    InvoiceLine,
    InvoicePayment,
    Payment,
    PaymentMethod,
    Price,
    ProrationPreview,
    Subscription,
)
from payments.ratelimit import TokenBucket
from payments.stripe_gateway import STRIPE_API_VERSION, StripeGateway
from payments.tax_ids import tax_id_for

# Fake HTTP boundary


class _GeneratedKey:
    """Matches the idempotency key the library invents for a POST sent without one."""

    _shape = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and bool(self._shape.fullmatch(other))

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "<generated key>"


GENERATED = _GeneratedKey()


@dataclass(frozen=True)
class Sent:
    method: str
    path: str
    params: dict[str, Any]
    idempotency_key: Any = None


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {key: _listify(value) for key, value in node.items()}
    if converted and all(key.isdigit() for key in converted):
        indices = sorted(converted, key=int)
        if [int(key) for key in indices] == list(range(len(indices))):
            return [converted[key] for key in indices]
    return converted


def decode_form(encoded: str) -> dict[str, Any]:
    """`items[0][price]=p&expand[0]=x` into {"items": [{"price": "p"}], "expand": ["x"]}."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(encoded, keep_blank_values=True):
        path = re.findall(r"[^\[\]]+", key)
        node = root
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    result = _listify(root)
    assert isinstance(result, dict)
    return result


class FakeStripe(stripe.HTTPClient):
    name = "fake"

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Sent] = []
        self.versions: list[str | None] = []
        self.raw_bodies: list[str] = []
        self._answers: deque[tuple[int, dict[str, Any]]] = deque()

    def answer(self, body: dict[str, Any], status: int = 200) -> None:
        self._answers.append((status, body))

    @property
    def unanswered(self) -> int:
        return len(self._answers)

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[str, int, Mapping[str, str]]:
        headers = headers or {}
        parts = urlsplit(url)
        assert parts.netloc == "api.stripe.com"
        encoded = post_data if method == "post" else parts.query
        self.raw_bodies.append(encoded or "")
        self.sent.append(
            Sent(method, parts.path, decode_form(encoded or ""), headers.get("Idempotency-Key"))
        )
        self.versions.append(headers.get("Stripe-Version"))
        if not self._answers:
            raise AssertionError(f"no canned answer for {method.upper()} {parts.path}")
        status, body = self._answers.popleft()
        return json.dumps(body), status, {"Request-Id": f"req_test{len(self.sent):04d}"}

    def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("these tests must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    client = FakeStripe()
    yield client
    assert client.unanswered == 0, "some canned answers were never asked for"
    assert set(client.versions) <= {STRIPE_API_VERSION}


@pytest.fixture
def gateway(fake: FakeStripe) -> StripeGateway:
    return StripeGateway(api_key="sk_test_51KiloBillingFakeKey", http_client=fake)


# Stripe-shaped builders (shapes from the current API, values of a realistic team plan)

CUSTOMER = "cus_RkM4t2QzX8aLpE"
PRODUCT = "prod_RkM5TeamSeat01"
PRICE = "price_1RkM5bB7WZ01zgkWs7Tq2Kd0"
SUBSCRIPTION = "sub_1RkM6cB7WZ01zgkWn4Hq8Yp2"
ITEM = "si_RkM6TeamSeat9x"
INVOICE = "in_1RkM7dB7WZ01zgkWa1Bc2De3"
PM = "pm_1RkM8eB7WZ01zgkWv1Sa4242"
SESSION = "cs_test_a1RkM9fB7WZ01zgkWq2Ws3Ed4Rf5Tg6Yh7Uj8Ik9Ol0P"

T0 = 1772323200  # 2026-03-01 00:00 UTC: the period start
T1 = 1775001600  # 2026-04-01 00:00 UTC: the period end
MID = 1773532800  # 2026-03-15 00:00 UTC: the change


def at(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


def stripe_list(data: list[dict[str, Any]], url: str, *, has_more: bool = False) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def address_json(**values: str | None) -> dict[str, Any]:
    base: dict[str, str | None] = {
        "city": None,
        "country": None,
        "line1": None,
        "line2": None,
        "postal_code": None,
        "state": None,
    }
    return {**base, **values}


def customer_json(*, default_payment_method: Any = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": CUSTOMER,
        "object": "customer",
        "address": address_json(city="Berlin", country="DE", line1="Torstrasse 1"),
        "balance": 0,
        "created": T0 - 86400,
        "currency": "usd",
        "default_source": None,
        "delinquent": False,
        "description": None,
        "email": "billing@acme.example",
        "invoice_prefix": "ACME0001",
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": default_payment_method,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": {"organization": "42"},
        "name": "Acme Robotics",
        "next_invoice_sequence": 3,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
        **extra,
    }


def payment_method_json(*, id: str = PM, last4: str = "4242") -> dict[str, Any]:
    return {
        "id": id,
        "object": "payment_method",
        "allow_redisplay": "always",
        "billing_details": {
            "address": address_json(country="DE", postal_code="10119"),
            "email": "billing@acme.example",
            "name": "Ada Lovelace",
            "phone": None,
            "tax_id": None,
        },
        "card": {
            "brand": "visa",
            "checks": {"cvc_check": "pass"},
            "country": "US",
            "display_brand": "visa",
            "exp_month": 8,
            "exp_year": 2030,
            "fingerprint": "Xt5EWLLDS7FJjR1c",
            "funding": "credit",
            "last4": last4,
            "networks": {"available": ["visa"], "preferred": None},
            "wallet": None,
        },
        "created": T0 - 3600,
        "customer": CUSTOMER,
        "livemode": False,
        "metadata": {},
        "type": "card",
    }


def product_json(*, name: str = "Kilo Team seat") -> dict[str, Any]:
    return {
        "id": PRODUCT,
        "object": "product",
        "active": True,
        "created": T0 - 7 * 86400,
        "default_price": None,
        "description": None,
        "images": [],
        "livemode": False,
        "marketing_features": [],
        "metadata": {},
        "name": name,
        "shippable": None,
        "tax_code": None,
        "type": "service",
        "updated": T0 - 7 * 86400,
        "url": None,
    }


def price_json(*, id: str = PRICE, unit_amount: int = 2000) -> dict[str, Any]:
    return {
        "id": id,
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": T0 - 7 * 86400,
        "currency": "usd",
        "livemode": False,
        "lookup_key": "team_seat_monthly",
        "metadata": {},
        "nickname": None,
        "product": PRODUCT,
        "recurring": {
            "interval": "month",
            "interval_count": 1,
            "meter": None,
            "trial_period_days": None,
            "usage_type": "licensed",
        },
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring",
        "unit_amount": unit_amount,
        "unit_amount_decimal": str(unit_amount),
    }


def line_json(
    *,
    id: str,
    amount: int,
    description: str,
    quantity: int = 1,
    proration: bool = False,
    start: int = T0,
    end: int = T1,
    invoice: str = INVOICE,
    from_subscription: bool = True,
) -> dict[str, Any]:
    if from_subscription:
        parent: dict[str, Any] = {
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None,
                "proration": proration,
                "proration_details": {"credited_items": None},
                "subscription": SUBSCRIPTION,
                "subscription_item": ITEM,
            },
            "type": "subscription_item_details",
        }
    else:
        parent = {
            "invoice_item_details": {
                "invoice_item": "ii_1RkMaaB7WZ01zgkWc0Cr3d1t",
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": None,
            },
            "subscription_item_details": None,
            "type": "invoice_item_details",
        }
    return {
        "id": id,
        "object": "line_item",
        "amount": amount,
        "currency": "usd",
        "description": description,
        "discount_amounts": [],
        "discountable": True,
        "discounts": [],
        "invoice": invoice,
        "livemode": False,
        "metadata": {},
        "parent": parent,
        "period": {"end": end, "start": start},
        "pretax_credit_amounts": [],
        "pricing": {
            "price_details": {"price": PRICE, "product": PRODUCT},
            "type": "price_details",
            "unit_amount_decimal": str(amount // max(quantity, 1)),
        },
        "quantity": quantity,
        "subtotal": amount,
        "taxes": [],
    }


def invoice_json(
    *,
    id: str = INVOICE,
    status: str = "paid",
    amount: int = 1000,
    lines: list[dict[str, Any]] | None = None,
    billing_reason: str = "manual",
    subscription: str | None = None,
    metadata: dict[str, str] | None = None,
    description: str | None = "AI credits top-up",
    attempt_count: int | None = None,
) -> dict[str, Any]:
    paid = status == "paid"
    if lines is None:
        lines = [
            line_json(
                id="il_1RkM7dB7WZ01zgkWl1n3It3m",
                amount=amount,
                description="AI credits top-up",
                start=MID,
                end=MID,
                from_subscription=False,
            )
        ]
    finalized = status != "draft"
    return {
        "id": id,
        "object": "invoice",
        "account_country": "US",
        "account_name": "Kilo Code",
        "amount_due": amount,
        "amount_overpaid": 0,
        "amount_paid": amount if paid else 0,
        "amount_remaining": 0 if paid else amount,
        "amount_shipping": 0,
        "attempt_count": attempt_count if attempt_count is not None else int(finalized),
        "attempted": finalized,
        "auto_advance": False,
        "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
        "billing_reason": billing_reason,
        "collection_method": "charge_automatically",
        "created": MID,
        "currency": "usd",
        "customer": CUSTOMER,
        "customer_email": "billing@acme.example",
        "customer_name": "Acme Robotics",
        "description": description,
        "due_date": None,
        "effective_at": MID if finalized else None,
        "hosted_invoice_url": f"https://invoice.stripe.com/i/acct_1KiloTest/test_{id}"
        if finalized
        else None,
        "invoice_pdf": f"https://pay.stripe.com/invoice/acct_1KiloTest/test_{id}/pdf"
        if finalized
        else None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "lines": stripe_list(lines, f"/v1/invoices/{id}/lines"),
        "livemode": False,
        "metadata": metadata if metadata is not None else {},
        "next_payment_attempt": None,
        "number": "ACME0001-0003" if finalized else None,
        "parent": {
            "quote_details": None,
            "subscription_details": {"metadata": {}, "subscription": subscription},
            "type": "subscription_details",
        }
        if subscription
        else None,
        "period_end": MID,
        "period_start": MID,
        "status": status,
        "status_transitions": {
            "finalized_at": MID if finalized else None,
            "marked_uncollectible_at": None,
            "paid_at": MID + 5 if paid else None,
            "voided_at": None,
        },
        "subtotal": amount,
        "test_clock": None,
        "total": amount,
    }


def subscription_json(
    *,
    quantity: int = 2,
    unit_amount: int = 2000,
    status: str = "active",
    latest_invoice: Any = "in_1RkM6cB7WZ01zgkWf1rst000",
    pending_update: dict[str, Any] | None = None,
    cancel_at_period_end: bool = False,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "id": SUBSCRIPTION,
        "object": "subscription",
        "application": None,
        "automatic_tax": {"enabled": False, "liability": None, "disabled_reason": None},
        "billing_cycle_anchor": T0,
        "billing_mode": {"type": "flexible", "flexible": {"proration_discounts": "included"}},
        "cancel_at": T1 if cancel_at_period_end else None,
        "cancel_at_period_end": cancel_at_period_end,
        "canceled_at": None,
        "collection_method": "charge_automatically",
        "created": T0,
        "currency": "usd",
        "customer": CUSTOMER,
        "default_payment_method": None,
        "description": None,
        "discounts": [],
        "ended_at": None,
        "items": stripe_list(
            [
                {
                    "id": ITEM,
                    "object": "subscription_item",
                    "created": T0,
                    "current_period_end": T1,
                    "current_period_start": T0,
                    "discounts": [],
                    "metadata": {},
                    "price": price_json(unit_amount=unit_amount),
                    "quantity": quantity,
                    "subscription": SUBSCRIPTION,
                    "tax_rates": [],
                }
            ],
            f"/v1/subscription_items?subscription={SUBSCRIPTION}",
        ),
        "latest_invoice": latest_invoice,
        "livemode": False,
        "metadata": metadata if metadata is not None else {"organization": "42"},
        "pending_setup_intent": None,
        "pending_update": pending_update,
        "schedule": None,
        "start_date": T0,
        "status": status,
        "test_clock": None,
        "trial_end": None,
        "trial_start": None,
    }


def checkout_session_json(
    *,
    mode: str = "payment",
    status: str = "open",
    payment_status: str = "unpaid",
    amount_total: int = 5000,
    metadata: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": SESSION,
        "object": "checkout.session",
        "amount_subtotal": amount_total,
        "amount_total": amount_total,
        "cancel_url": "https://billing.kilo.example/credits?canceled=1",
        "created": MID,
        "currency": "usd",
        "customer": CUSTOMER,
        "customer_email": None,
        "expires_at": MID + 86400,
        "invoice": None,
        "invoice_creation": {"enabled": mode == "payment", "invoice_data": {}},
        "livemode": False,
        "metadata": metadata if metadata is not None else {"organization": "42"},
        "mode": mode,
        "payment_intent": None,
        "payment_method_types": ["card"],
        "payment_status": payment_status,
        "status": status,
        "subscription": None,
        "success_url": "https://billing.kilo.example/credits?session={CHECKOUT_SESSION_ID}",
        "ui_mode": "hosted",
        "url": f"https://checkout.stripe.com/c/pay/{SESSION}#fidkdWxOYHwnPyd1blpxYHZxWjA0",
        **extra,
    }


def portal_session_json(*, url: str) -> dict[str, Any]:
    return {
        "id": "bps_1RkMbbB7WZ01zgkWp0rTa1Ss",
        "object": "billing_portal.session",
        "configuration": "bpc_1RkMbbB7WZ01zgkWc0nF1g00",
        "created": MID,
        "customer": CUSTOMER,
        "flow": None,
        "livemode": False,
        "locale": None,
        "on_behalf_of": None,
        "return_url": "https://billing.kilo.example/settings",
        "url": url,
    }


def tax_id_json(*, id: str, value: str, type: str = "eu_vat") -> dict[str, Any]:
    return {
        "id": id,
        "object": "tax_id",
        "country": value[:2],
        "created": T0 - 86400,
        "customer": CUSTOMER,
        "livemode": False,
        "type": type,
        "value": value,
        "verification": {"status": "pending", "verified_address": None, "verified_name": None},
    }


def invoice_item_json(*, amount: int, invoice: str = INVOICE) -> dict[str, Any]:
    return {
        "id": "ii_1RkMaaB7WZ01zgkWc0Cr3d1t",
        "object": "invoiceitem",
        "amount": amount,
        "currency": "usd",
        "customer": CUSTOMER,
        "date": MID,
        "description": "AI credits top-up",
        "discountable": True,
        "discounts": [],
        "invoice": invoice,
        "livemode": False,
        "metadata": {"purchase": "p_981"},
        "parent": None,
        "period": {"end": MID, "start": MID},
        "pricing": {"type": "price_details", "unit_amount_decimal": str(amount)},
        "proration": False,
        "quantity": 1,
        "tax_rates": [],
        "test_clock": None,
    }


def card_error_json(
    *,
    message: str = "Your card has insufficient funds.",
    code: str = "card_declined",
    decline_code: str = "insufficient_funds",
) -> dict[str, Any]:
    return {
        "error": {
            "type": "card_error",
            "code": code,
            "decline_code": decline_code,
            "message": message,
            "doc_url": f"https://stripe.com/docs/error-codes/{code}",
            "request_log_url": "https://dashboard.stripe.com/test/logs/req_test0001",
            "payment_intent": {
                "id": "pi_3RkMccB7WZ01zgkW1d3cL1n3",
                "status": "requires_payment_method",
            },
        }
    }


def invalid_request_json(message: str, *, param: str | None = None) -> dict[str, Any]:
    return {
        "error": {
            "type": "invalid_request_error",
            "code": "resource_missing",
            "message": message,
            "param": param,
            "doc_url": "https://stripe.com/docs/error-codes/resource-missing",
        }
    }


def invoice_payment_json(*, intent: dict[str, Any], invoice: str) -> dict[str, Any]:
    return {
        "id": "inpay_1RkMddB7WZ01zgkWp4yM3nt0",
        "object": "invoice_payment",
        "amount_paid": None,
        "amount_requested": 3000,
        "created": MID,
        "currency": "usd",
        "invoice": invoice,
        "is_default": True,
        "livemode": False,
        "payment": {"payment_intent": intent, "type": "payment_intent"},
        "status": "open",
        "status_transitions": {"canceled_at": None, "paid_at": None},
    }


def payment_intent_json(
    *, status: str, last_payment_error: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "id": "pi_3RkMccB7WZ01zgkW1d3cL1n3",
        "object": "payment_intent",
        "amount": 3000,
        "currency": "usd",
        "customer": CUSTOMER,
        "last_payment_error": last_payment_error,
        "payment_method": PM,
        "status": status,
    }


def proration_lines() -> list[dict[str, Any]]:
    return [
        line_json(
            id="il_tmp_unused0001",
            amount=-1000,
            description="Unused time on 2 × Kilo Team seat after 15 Mar 2026",
            quantity=2,
            proration=True,
            start=MID,
        ),
        line_json(
            id="il_tmp_remain0001",
            amount=2500,
            description="Remaining time on 5 × Kilo Team seat after 15 Mar 2026",
            quantity=5,
            proration=True,
            start=MID,
        ),
    ]


VISA = PaymentMethod(id=PM, brand="visa", last4="4242", exp_month=8, exp_year=2030)
ACME = CustomerDetails(
    name="Acme Robotics",
    email="billing@acme.example",
    address=Address(
        line1="Torstrasse 1", line2="3. OG", city="Berlin", postal_code="10119", country="DE"
    ),
    tax_id="DE123456789",
    tax_id_type="eu_vat",
)
ACME_ADDRESS_FORM = {
    "line1": "Torstrasse 1",
    "line2": "3. OG",
    "city": "Berlin",
    "postal_code": "10119",
    "state": "",
    "country": "DE",
}


# The pinned version


def test_it_pins_the_api_version_of_the_library(fake: FakeStripe, gateway: StripeGateway) -> None:
    fake.answer(invoice_json())

    gateway.invoice_retrieve(invoice_id=INVOICE)

    assert stripe.api_version == STRIPE_API_VERSION
    assert fake.versions == [STRIPE_API_VERSION]
    assert gateway.name == "stripe"


# Customers and payment methods


def test_it_creates_a_customer_with_address_tax_id_and_metadata(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    fake.answer(customer_json())

    customer_id = gateway.customer_create(
        details=ACME, metadata={"organization": "42"}, idempotency_key="org-42:customer"
    )

    assert customer_id == CUSTOMER
    assert fake.sent == [
        Sent(
            "post",
            "/v1/customers",
            {
                "name": "Acme Robotics",
                "email": "billing@acme.example",
                "address": ACME_ADDRESS_FORM,
                "metadata": {"organization": "42"},
                "tax_id_data": [{"type": "eu_vat", "value": "DE123456789"}],
            },
            "org-42:customer",
        )
    ]


def test_it_creates_a_customer_without_address_or_tax_id(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    fake.answer(customer_json(address=None))

    gateway.customer_create(
        details=CustomerDetails(name="Globex", email="ap@globex.example"),
        metadata={"organization": "7"},
        idempotency_key="org-7:customer",
    )

    assert fake.sent == [
        Sent(
            "post",
            "/v1/customers",
            {"name": "Globex", "email": "ap@globex.example", "metadata": {"organization": "7"}},
            "org-7:customer",
        )
    ]


def test_it_updates_a_customer_and_replaces_a_changed_tax_id(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    fake.answer(customer_json())
    fake.answer(
        stripe_list(
            [tax_id_json(id="txi_1RkOldVat000001", value="DE999999999")],
            f"/v1/customers/{CUSTOMER}/tax_ids",
        )
    )
    fake.answer(tax_id_json(id="txi_1RkNewVat000001", value="DE123456789"))
    fake.answer({**tax_id_json(id="txi_1RkOldVat000001", value="DE999999999"), "deleted": True})

    gateway.customer_update(customer_id=CUSTOMER, details=ACME)

    assert fake.sent == [
        Sent(
            "post",
            f"/v1/customers/{CUSTOMER}",
            {
                "name": "Acme Robotics",
                "email": "billing@acme.example",
                "address": ACME_ADDRESS_FORM,
            },
            GENERATED,
        ),
        Sent("get", f"/v1/customers/{CUSTOMER}/tax_ids", {"limit": "100"}),
        Sent(
            "post",
            f"/v1/customers/{CUSTOMER}/tax_ids",
            {"type": "eu_vat", "value": "DE123456789"},
            GENERATED,
        ),
        Sent("delete", f"/v1/customers/{CUSTOMER}/tax_ids/txi_1RkOldVat000001", {}),
    ]


def test_it_keeps_an_unchanged_tax_id_and_clears_a_removed_address(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    fake.answer(customer_json(address=None))
    fake.answer(
        stripe_list(
            [tax_id_json(id="txi_1RkSameVat00001", value="DE123456789")],
            f"/v1/customers/{CUSTOMER}/tax_ids",
        )
    )

    gateway.customer_update(
        customer_id=CUSTOMER, details=replace(ACME, address=None, tax_id="DE 123 456 789")
    )

    assert fake.sent == [
        Sent(
            "post",
            f"/v1/customers/{CUSTOMER}",
            {"name": "Acme Robotics", "email": "billing@acme.example", "address": ""},
            GENERATED,
        ),
        Sent("get", f"/v1/customers/{CUSTOMER}/tax_ids", {"limit": "100"}),
    ]


def test_it_deletes_every_tax_id_when_the_customer_has_none_any_more(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    fake.answer(customer_json())
    fake.answer(
        stripe_list(
            [
                tax_id_json(id="txi_1RkVat00000001", value="DE123456789"),
                tax_id_json(id="txi_1RkGbVat000001", value="GB123456789", type="gb_vat"),
            ],
            f"/v1/customers/{CUSTOMER}/tax_ids",
        )
    )
    fake.answer({"id": "txi_1RkVat00000001", "object": "tax_id", "deleted": True})
    fake.answer({"id": "txi_1RkGbVat000001", "object": "tax_id", "deleted": True})

    gateway.customer_update(customer_id=CUSTOMER, details=replace(ACME, tax_id="", tax_id_type=""))

    assert [(sent.method, sent.path) for sent in fake.sent] == [
        ("post", f"/v1/customers/{CUSTOMER}"),
        ("get", f"/v1/customers/{CUSTOMER}/tax_ids"),
        ("delete", f"/v1/customers/{CUSTOMER}/tax_ids/txi_1RkVat00000001"),
        ("delete", f"/v1/customers/{CUSTOMER}/tax_ids/txi_1RkGbVat000001"),
    ]


def test_it_reads_the_default_payment_method_from_the_customer(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    fake.answer(customer_json(default_payment_method=payment_method_json()))

    assert gateway.payment_method_default(customer_id=CUSTOMER) == VISA
    assert fake.sent == [
        Sent(
            "get",
            f"/v1/customers/{CUSTOMER}",
            {"expand": ["invoice_settings.default_payment_method"]},
        )
    ]


def test_it_never_reports_an_attached_card_that_is_not_the_default(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    # Stripe charges invoices with the customer's invoice_settings.default_payment_method (or the
    # subscription's own), never with a card that is merely attached
    # (https://docs.stripe.com/billing/revenue-recovery/smart-retries): no fallback, no list.
    fake.answer(customer_json())

    assert gateway.payment_method_default(customer_id=CUSTOMER) is None
    assert fake.sent == [
        Sent(
            "get",
            f"/v1/customers/{CUSTOMER}",
            {"expand": ["invoice_settings.default_payment_method"]},
        )
    ]


def test_it_opens_the_portal_on_the_payment_method_update_flow(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    url = "https://billing.stripe.com/p/session/test_YWNjdF8xS2lsbw"
    fake.answer(portal_session_json(url=url))

    result = gateway.payment_method_update_url(
        customer_id=CUSTOMER, return_url="https://billing.kilo.example/settings"
    )

    assert result == url
    assert fake.sent == [
        Sent(
            "post",
            "/v1/billing_portal/sessions",
            {
                "customer": CUSTOMER,
                "return_url": "https://billing.kilo.example/settings",
                "flow_data": {"type": "payment_method_update"},
            },
            GENERATED,
        )
    ]


def test_it_opens_the_billing_portal(fake: FakeStripe, gateway: StripeGateway) -> None:
    url = "https://billing.stripe.com/p/session/test_cG9ydGFsX2hvbWU"
    fake.answer(portal_session_json(url=url))

    result = gateway.billing_portal_url(
        customer_id=CUSTOMER, return_url="https://billing.kilo.example/invoices"
    )

    assert result == url
    assert fake.sent == [
        Sent(
            "post",
            "/v1/billing_portal/sessions",
            {"customer": CUSTOMER, "return_url": "https://billing.kilo.example/invoices"},
            GENERATED,
        )
    ]


# Prices


def test_it_finds_the_price_by_lookup_key(fake: FakeStripe, gateway: StripeGateway) -> None:
    fake.answer(stripe_list([price_json()], "/v1/prices"))

    price = gateway.price_ensure(
        lookup_key="team_seat_monthly", product_name="Kilo Team seat", unit_amount=2000
    )

    assert price == Price(id=PRICE, unit_amount=2000, currency="usd", interval="month")
    assert fake.sent == [
        Sent(
            "get",
            "/v1/prices",
            {"lookup_keys": ["team_seat_monthly"], "active": "true", "limit": "1"},
        )
    ]


def test_it_creates_the_product_and_the_monthly_price_once(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    fake.answer(stripe_list([], "/v1/prices"))
    fake.answer(product_json())
    fake.answer(price_json(id="price_1RkMffB7WZ01zgkWn3wPr1c3", unit_amount=2500))

    price = gateway.price_ensure(
        lookup_key="team_seat_monthly", product_name="Kilo Team seat", unit_amount=2500
    )

    assert price == Price(
        id="price_1RkMffB7WZ01zgkWn3wPr1c3", unit_amount=2500, currency="usd", interval="month"
    )
    assert fake.sent[1:] == [
        Sent(
            "post",
            "/v1/products",
            {"name": "Kilo Team seat"},
            "price_ensure:team_seat_monthly:2500:usd:product",
        ),
        Sent(
            "post",
            "/v1/prices",
            {
                "product": PRODUCT,
                "unit_amount": "2500",
                "currency": "usd",
                "recurring": {"interval": "month"},
                "lookup_key": "team_seat_monthly",
            },
            "price_ensure:team_seat_monthly:2500:usd:price",
        ),
    ]


# One-off purchases


def _charge_requests(key: str) -> list[Sent]:
    metadata = {"purchase": "p_981", "organization": "42"}
    return [
        Sent(
            "post",
            "/v1/invoices",
            {
                "customer": CUSTOMER,
                "collection_method": "charge_automatically",
                "auto_advance": "false",
                "pending_invoice_items_behavior": "exclude",
                "currency": "usd",
                "description": "AI credits top-up",
                "metadata": metadata,
            },
            f"{key}:invoice",
        ),
        Sent(
            "post",
            "/v1/invoiceitems",
            {
                "customer": CUSTOMER,
                "invoice": INVOICE,
                "amount": "1000",
                "currency": "usd",
                "description": "AI credits top-up",
                "metadata": metadata,
            },
            f"{key}:item",
        ),
        Sent(
            "post",
            f"/v1/invoices/{INVOICE}/finalize",
            {"auto_advance": "false"},
            f"{key}:finalize",
        ),
        Sent("post", f"/v1/invoices/{INVOICE}/pay", {"off_session": "true"}, f"{key}:pay"),
    ]


def _charge(gateway: StripeGateway, key: str) -> Any:
    return gateway.charge(
        customer_id=CUSTOMER,
        amount=1000,
        currency="usd",
        description="AI credits top-up",
        metadata={"purchase": "p_981", "organization": "42"},
        idempotency_key=key,
    )


def test_it_charges_a_one_off_purchase_as_an_invoice_paid_off_session(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    metadata = {"purchase": "p_981", "organization": "42"}
    fake.answer(invoice_json(status="draft", lines=[], amount=0, metadata=metadata))
    fake.answer(invoice_item_json(amount=1000))
    fake.answer(invoice_json(status="open", metadata=metadata))
    fake.answer(invoice_json(status="paid", metadata=metadata))

    charge = _charge(gateway, "purchase-p_981")

    assert fake.sent == _charge_requests("purchase-p_981")
    assert charge.failure is None
    assert charge.paid
    assert charge.invoice == Invoice(
        id=INVOICE,
        number="ACME0001-0003",
        customer=CUSTOMER,
        status="paid",
        billing_reason="manual",
        amount_due=1000,
        amount_paid=1000,
        amount_remaining=0,
        currency="usd",
        attempt_count=1,
        next_payment_attempt=None,
        period_start=at(MID),
        period_end=at(MID),
        lines=(
            InvoiceLine(
                description="AI credits top-up",
                amount=1000,
                quantity=1,
                proration=False,
                period_start=at(MID),
                period_end=at(MID),
            ),
        ),
        hosted_invoice_url=f"https://invoice.stripe.com/i/acct_1KiloTest/test_{INVOICE}",
        invoice_pdf=f"https://pay.stripe.com/invoice/acct_1KiloTest/test_{INVOICE}/pdf",
        subscription="",
        metadata=metadata,
        created=at(MID),
        paid_at=at(MID + 5),
    )


def test_it_returns_a_declined_charge_with_the_invoice_left_open(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    fake.answer(invoice_json(status="draft", lines=[], amount=0))
    fake.answer(invoice_item_json(amount=1000))
    fake.answer(invoice_json(status="open"))
    fake.answer(card_error_json(), status=402)
    fake.answer(invoice_json(status="open"))

    charge = _charge(gateway, "purchase-p_982")

    assert fake.sent == [
        *_charge_requests("purchase-p_982"),
        Sent("get", f"/v1/invoices/{INVOICE}", {}),
    ]
    assert not charge.paid
    assert charge.invoice.id == INVOICE
    assert charge.invoice.status == "open"
    assert charge.invoice.amount_remaining == 1000
    assert charge.failure is not None
    assert charge.failure.message == "Your card has insufficient funds."
    assert charge.failure.code == "card_declined"
    assert charge.failure.decline_code == "insufficient_funds"
    assert charge.failure.invoice_id == INVOICE


def test_it_derives_the_same_keys_when_a_charge_is_retried(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    for _ in range(2):
        fake.answer(invoice_json(status="draft", lines=[], amount=0))
        fake.answer(invoice_item_json(amount=1000))
        fake.answer(invoice_json(status="open"))
        fake.answer(invoice_json(status="paid"))

    first = _charge(gateway, "purchase-p_983")
    second = _charge(gateway, "purchase-p_983")

    assert first == second
    keys = [sent.idempotency_key for sent in fake.sent]
    assert keys[:4] == keys[4:]
    assert len(set(keys[:4])) == 4


def test_it_raises_a_gateway_error_when_stripe_refuses_a_charge_step(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    fake.answer(invoice_json(status="draft", lines=[], amount=0))
    fake.answer(invalid_request_json("No such customer: 'cus_gone'", param="customer"), 400)

    with pytest.raises(GatewayError) as caught:
        _charge(gateway, "purchase-p_984")

    assert not isinstance(caught.value, CardError)
    assert "No such customer: 'cus_gone'" in str(caught.value)
    assert "InvalidRequestError" in str(caught.value)
    assert [sent.path for sent in fake.sent] == ["/v1/invoices", "/v1/invoiceitems"]


def test_it_opens_a_payment_checkout_that_saves_the_card_and_creates_an_invoice(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    metadata = {"purchase": "p_990", "organization": "42"}
    fake.answer(checkout_session_json(metadata=metadata))

    session = gateway.checkout_payment(
        customer_id=CUSTOMER,
        amount=5000,
        currency="usd",
        description="AI credits top-up",
        metadata=metadata,
        success_url="https://billing.kilo.example/credits?session={CHECKOUT_SESSION_ID}",
        cancel_url="https://billing.kilo.example/credits?canceled=1",
        idempotency_key="purchase-p_990:checkout",
    )

    assert session == CheckoutSession(
        id=SESSION,
        url=f"https://checkout.stripe.com/c/pay/{SESSION}#fidkdWxOYHwnPyd1blpxYHZxWjA0",
        status="open",
        mode="payment",
        payment_status="unpaid",
        customer=CUSTOMER,
        subscription="",
        invoice="",
        payment_intent="",
        amount_total=5000,
        metadata=metadata,
    )
    assert fake.sent == [
        Sent(
            "post",
            "/v1/checkout/sessions",
            {
                "mode": "payment",
                "customer": CUSTOMER,
                "line_items": [
                    {
                        "price_data": {
                            "currency": "usd",
                            "unit_amount": "5000",
                            "product_data": {"name": "AI credits top-up"},
                        },
                        "quantity": "1",
                    }
                ],
                "invoice_creation": {
                    "enabled": "true",
                    "invoice_data": {"description": "AI credits top-up", "metadata": metadata},
                },
                "payment_intent_data": {"setup_future_usage": "off_session", "metadata": metadata},
                "metadata": metadata,
                "success_url": "https://billing.kilo.example/credits?session={CHECKOUT_SESSION_ID}",
                "cancel_url": "https://billing.kilo.example/credits?canceled=1",
            },
            "purchase-p_990:checkout",
        )
    ]


def test_it_opens_a_subscription_checkout(fake: FakeStripe, gateway: StripeGateway) -> None:
    fake.answer(checkout_session_json(mode="subscription", amount_total=6000))

    session = gateway.checkout_subscription(
        customer_id=CUSTOMER,
        price_id=PRICE,
        quantity=3,
        metadata={"organization": "42"},
        success_url="https://billing.kilo.example/seats?session={CHECKOUT_SESSION_ID}",
        cancel_url="https://billing.kilo.example/seats",
        idempotency_key="org-42:subscribe:1",
    )

    assert session.mode == "subscription"
    assert session.amount_total == 6000
    assert fake.sent == [
        Sent(
            "post",
            "/v1/checkout/sessions",
            {
                "mode": "subscription",
                "customer": CUSTOMER,
                "line_items": [{"price": PRICE, "quantity": "3"}],
                "subscription_data": {"metadata": {"organization": "42"}},
                "metadata": {"organization": "42"},
                "success_url": "https://billing.kilo.example/seats?session={CHECKOUT_SESSION_ID}",
                "cancel_url": "https://billing.kilo.example/seats",
            },
            "org-42:subscribe:1",
        )
    ]


def test_it_retrieves_a_completed_checkout_session(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    fake.answer(
        checkout_session_json(
            mode="subscription",
            status="complete",
            payment_status="paid",
            amount_total=6000,
            subscription=SUBSCRIPTION,
            invoice=INVOICE,
            url=None,
        )
    )

    session = gateway.checkout_session_retrieve(session_id=SESSION)

    assert fake.sent == [Sent("get", f"/v1/checkout/sessions/{SESSION}", {})]
    assert (session.status, session.payment_status, session.url) == ("complete", "paid", "")
    assert (session.subscription, session.invoice) == (SUBSCRIPTION, INVOICE)


def test_it_makes_the_card_a_payment_checkout_collected_the_default(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    session = checkout_session_json(
        mode="payment", status="complete", payment_status="paid", amount_total=10000, url=None
    )
    session["payment_intent"] = payment_intent_json(status="succeeded", last_payment_error=None)
    session["customer"] = CUSTOMER
    fake.answer(session)
    fake.answer(customer_json(default_payment_method=PM))

    gateway.checkout_session_save_card(session_id=SESSION)

    assert fake.sent == [
        Sent(
            "get",
            f"/v1/checkout/sessions/{SESSION}",
            {"expand": ["payment_intent.payment_method", "subscription"]},
        ),
        Sent(
            "post",
            f"/v1/customers/{CUSTOMER}",
            {"invoice_settings": {"default_payment_method": PM}},
            GENERATED,
        ),
    ]


def test_it_keeps_the_saved_card_when_a_bank_debit_paid_the_checkout(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    # ACH Direct Debit in Checkout (https://docs.stripe.com/payments/ach-direct-debit/accept-a-payment):
    # the bank account is no card to charge off-session later.
    session = checkout_session_json(
        mode="payment", status="complete", payment_status="paid", amount_total=10000, url=None
    )
    session["payment_intent"] = {
        **payment_intent_json(status="succeeded", last_payment_error=None),
        "payment_method": {
            "id": "pm_1RkMbankB7WZ01zgkWus0001",
            "object": "payment_method",
            "type": "us_bank_account",
            "us_bank_account": {"bank_name": "STRIPE TEST BANK", "last4": "6789"},
        },
    }
    fake.answer(session)

    gateway.checkout_session_save_card(session_id=SESSION)

    assert [sent.method for sent in fake.sent] == ["get"]


# Subscriptions

ACTIVE_TWO_SEATS = Subscription(
    id=SUBSCRIPTION,
    customer=CUSTOMER,
    status="active",
    price=PRICE,
    unit_amount=2000,
    quantity=2,
    current_period_start=at(T0),
    current_period_end=at(T1),
    cancel_at_period_end=False,
    pending_quantity=None,
    latest_invoice="in_1RkM6cB7WZ01zgkWf1rst000",
    metadata={"organization": "42"},
    created=at(T0),
)


def test_it_creates_a_subscription_charged_at_once(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    first = invoice_json(
        id="in_1RkM6cB7WZ01zgkWf1rst000",
        amount=4000,
        billing_reason="subscription_create",
        subscription=SUBSCRIPTION,
        lines=[line_json(id="il_1", amount=4000, description="2 × Kilo Team seat", quantity=2)],
    )
    fake.answer(subscription_json(latest_invoice=first))

    subscription = gateway.subscription_create(
        customer_id=CUSTOMER,
        price_id=PRICE,
        quantity=2,
        metadata={"organization": "42"},
        idempotency_key="org-42:subscription",
    )

    assert subscription == ACTIVE_TWO_SEATS
    assert fake.sent == [
        Sent(
            "post",
            "/v1/subscriptions",
            {
                "customer": CUSTOMER,
                "items": [{"price": PRICE, "quantity": "2"}],
                "payment_behavior": "error_if_incomplete",
                "metadata": {"organization": "42"},
                "expand": ["latest_invoice"],
            },
            "org-42:subscription",
        )
    ]


def test_it_raises_a_card_error_when_the_first_subscription_invoice_is_declined(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    fake.answer(
        card_error_json(message="Your card was declined.", decline_code="generic_decline"), 402
    )

    with pytest.raises(CardError) as caught:
        gateway.subscription_create(
            customer_id=CUSTOMER,
            price_id=PRICE,
            quantity=2,
            metadata={},
            idempotency_key="org-42:subscription",
        )

    assert caught.value.message == "Your card was declined."
    assert caught.value.decline_code == "generic_decline"
    assert fake.sent[0].idempotency_key == "org-42:subscription"


def test_it_retrieves_a_subscription(fake: FakeStripe, gateway: StripeGateway) -> None:
    fake.answer(subscription_json())

    assert gateway.subscription_retrieve(subscription_id=SUBSCRIPTION) == ACTIVE_TWO_SEATS
    assert fake.sent == [Sent("get", f"/v1/subscriptions/{SUBSCRIPTION}", {})]


def test_it_previews_the_proration_of_an_increase(fake: FakeStripe, gateway: StripeGateway) -> None:
    fake.answer(subscription_json(quantity=2))
    preview = invoice_json(
        id="upcoming_in_1RkMggB7WZ01zgkWpr3v13w0",
        status="draft",
        amount=1500,
        billing_reason="subscription_update",
        subscription=SUBSCRIPTION,
        lines=[
            *proration_lines(),
            line_json(id="il_tmp_next0001", amount=0, description="Tax adjustment", start=MID),
        ],
    )
    fake.answer(preview)

    result = gateway.subscription_preview_quantity(
        subscription_id=SUBSCRIPTION, quantity=5, proration_date=at(MID)
    )

    assert fake.sent == [
        Sent("get", f"/v1/subscriptions/{SUBSCRIPTION}", {}),
        Sent(
            "post",
            "/v1/invoices/create_preview",
            {
                "customer": CUSTOMER,
                "subscription": SUBSCRIPTION,
                "subscription_details": {
                    "items": [{"id": ITEM, "quantity": "5"}],
                    "proration_behavior": "always_invoice",
                    "proration_date": str(MID),
                },
            },
            GENERATED,
        ),
    ]
    assert result == ProrationPreview(
        amount_due=1500,
        proration_date=at(MID),
        lines=(
            InvoiceLine(
                description="Unused time on 2 × Kilo Team seat after 15 Mar 2026",
                amount=-1000,
                quantity=2,
                proration=True,
                period_start=at(MID),
                period_end=at(T1),
            ),
            InvoiceLine(
                description="Remaining time on 5 × Kilo Team seat after 15 Mar 2026",
                amount=2500,
                quantity=5,
                proration=True,
                period_start=at(MID),
                period_end=at(T1),
            ),
        ),
        next_period_amount=10000,
    )


def test_it_previews_a_decrease_as_nothing_due_now(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    fake.answer(subscription_json(quantity=5))

    result = gateway.subscription_preview_quantity(
        subscription_id=SUBSCRIPTION, quantity=3, proration_date=at(MID)
    )

    assert fake.sent == [Sent("get", f"/v1/subscriptions/{SUBSCRIPTION}", {})]
    assert result == ProrationPreview(
        amount_due=0, proration_date=at(MID), lines=(), next_period_amount=6000
    )


def _increase_request(key: str, *, proration_date: int | None = MID) -> Sent:
    params: dict[str, Any] = {
        "items": [{"id": ITEM, "quantity": "5"}],
        "proration_behavior": "always_invoice",
        "payment_behavior": "pending_if_incomplete",
        "expand": ["latest_invoice"],
    }
    if proration_date is not None:
        params["proration_date"] = str(proration_date)
    return Sent("post", f"/v1/subscriptions/{SUBSCRIPTION}", params, key)


def test_it_increases_the_quantity_with_a_paid_proration_invoice(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    proration_invoice = invoice_json(
        id="in_1RkMhhB7WZ01zgkWpr0r4t3d",
        amount=1500,
        billing_reason="subscription_update",
        subscription=SUBSCRIPTION,
        lines=proration_lines(),
    )
    fake.answer(subscription_json(quantity=2))
    fake.answer(subscription_json(quantity=5, latest_invoice=proration_invoice))

    change = gateway.subscription_change_quantity(
        subscription_id=SUBSCRIPTION,
        quantity=5,
        proration_date=at(MID),
        idempotency_key="org-42:seats:5",
    )

    assert fake.sent == [
        Sent("get", f"/v1/subscriptions/{SUBSCRIPTION}", {}),
        _increase_request("org-42:seats:5"),
    ]
    assert change.subscription == replace(
        ACTIVE_TWO_SEATS, quantity=5, latest_invoice="in_1RkMhhB7WZ01zgkWpr0r4t3d"
    )
    assert change.invoice is not None
    assert change.invoice.id == "in_1RkMhhB7WZ01zgkWpr0r4t3d"
    assert change.invoice.paid
    assert change.invoice.amount_paid == 1500
    assert change.invoice.subscription == SUBSCRIPTION
    assert [line.proration for line in change.invoice.lines] == [True, True]


def test_it_omits_the_proration_date_when_none_is_given(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    paid = invoice_json(amount=1500, subscription=SUBSCRIPTION, lines=proration_lines())
    fake.answer(subscription_json(quantity=2))
    fake.answer(subscription_json(quantity=5, latest_invoice=paid))

    gateway.subscription_change_quantity(
        subscription_id=SUBSCRIPTION, quantity=5, proration_date=None, idempotency_key="k-5"
    )

    assert fake.sent[1] == _increase_request("k-5", proration_date=None)


def test_it_raises_a_card_error_when_an_increase_is_left_pending(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    open_invoice = invoice_json(
        id="in_1RkMiiB7WZ01zgkWunp41d00",
        status="open",
        amount=1500,
        billing_reason="subscription_update",
        subscription=SUBSCRIPTION,
        lines=proration_lines(),
    )
    pending = {
        "billing_cycle_anchor": None,
        "expires_at": MID + 23 * 3600,
        "subscription_items": [{"id": ITEM, "price": price_json(), "quantity": 5}],
        "trial_end": None,
        "trial_from_plan": None,
    }
    intent = payment_intent_json(
        status="requires_payment_method",
        last_payment_error={
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
        },
    )
    fake.answer(subscription_json(quantity=2))
    fake.answer(subscription_json(quantity=2, latest_invoice=open_invoice, pending_update=pending))
    fake.answer(
        stripe_list(
            [invoice_payment_json(intent=intent, invoice="in_1RkMiiB7WZ01zgkWunp41d00")],
            "/v1/invoice_payments",
        )
    )

    with pytest.raises(CardError) as caught:
        gateway.subscription_change_quantity(
            subscription_id=SUBSCRIPTION,
            quantity=5,
            proration_date=at(MID),
            idempotency_key="org-42:seats:5",
        )

    assert fake.sent == [
        Sent("get", f"/v1/subscriptions/{SUBSCRIPTION}", {}),
        _increase_request("org-42:seats:5"),
        Sent(
            "get",
            "/v1/invoice_payments",
            {
                "invoice": "in_1RkMiiB7WZ01zgkWunp41d00",
                "limit": "1",
                "expand": ["data.payment.payment_intent"],
            },
        ),
    ]
    assert caught.value.message == "Your card has insufficient funds."
    assert caught.value.code == "card_declined"
    assert caught.value.decline_code == "insufficient_funds"
    assert caught.value.invoice_id == "in_1RkMiiB7WZ01zgkWunp41d00"


def test_it_falls_back_to_a_generic_decline_when_stripe_says_no_more(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    open_invoice = invoice_json(
        id="in_1RkMjjB7WZ01zgkWunp41d01", status="open", amount=1500, subscription=SUBSCRIPTION
    )
    fake.answer(subscription_json(quantity=2))
    fake.answer(
        subscription_json(
            quantity=2,
            latest_invoice=open_invoice,
            pending_update={"expires_at": MID + 3600, "subscription_items": []},
        )
    )
    fake.answer(stripe_list([], "/v1/invoice_payments"))

    with pytest.raises(CardError) as caught:
        gateway.subscription_change_quantity(
            subscription_id=SUBSCRIPTION, quantity=5, proration_date=None, idempotency_key="k-6"
        )

    assert caught.value.message == "Your card was declined."
    assert caught.value.code == "card_declined"
    assert caught.value.invoice_id == "in_1RkMjjB7WZ01zgkWunp41d01"


def test_it_maps_a_declined_update_request_to_a_card_error(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    fake.answer(subscription_json(quantity=2))
    fake.answer(
        card_error_json(message="Your card has expired.", code="expired_card", decline_code=""),
        402,
    )

    with pytest.raises(CardError) as caught:
        gateway.subscription_change_quantity(
            subscription_id=SUBSCRIPTION,
            quantity=5,
            proration_date=at(MID),
            idempotency_key="org-42:seats:5",
        )

    assert fake.sent[1] == _increase_request("org-42:seats:5")
    assert (caught.value.message, caught.value.code) == ("Your card has expired.", "expired_card")


def test_it_decreases_the_quantity_at_once_without_proration(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    fake.answer(subscription_json(quantity=5))
    fake.answer(subscription_json(quantity=3))

    change = gateway.subscription_change_quantity(
        subscription_id=SUBSCRIPTION,
        quantity=3,
        proration_date=at(MID),
        idempotency_key="org-42:seats:3",
    )

    assert fake.sent == [
        Sent("get", f"/v1/subscriptions/{SUBSCRIPTION}", {}),
        Sent(
            "post",
            f"/v1/subscriptions/{SUBSCRIPTION}",
            {"items": [{"id": ITEM, "quantity": "3"}], "proration_behavior": "none"},
            "org-42:seats:3",
        ),
    ]
    assert change.invoice is None
    assert change.subscription == replace(ACTIVE_TWO_SEATS, quantity=3)


def test_it_cancels_at_period_end_and_resumes(fake: FakeStripe, gateway: StripeGateway) -> None:
    fake.answer(subscription_json(cancel_at_period_end=True))
    fake.answer(subscription_json(cancel_at_period_end=False))

    canceled = gateway.subscription_cancel_at_period_end(subscription_id=SUBSCRIPTION)
    resumed = gateway.subscription_resume(subscription_id=SUBSCRIPTION)

    assert canceled.cancel_at_period_end
    assert not resumed.cancel_at_period_end
    assert fake.sent == [
        Sent(
            "post", f"/v1/subscriptions/{SUBSCRIPTION}", {"cancel_at_period_end": "true"}, GENERATED
        ),
        Sent(
            "post",
            f"/v1/subscriptions/{SUBSCRIPTION}",
            {"cancel_at_period_end": "false"},
            GENERATED,
        ),
    ]


# Invoices


def test_it_lists_the_customers_invoices_with_the_payments_that_paid_them(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    # `payments` is an includable field of the invoice, asked for with expand
    # (https://docs.stripe.com/api/invoice-payment/list).
    paid = {
        **invoice_payment_json(intent=INTENT, invoice="in_1RkMkkB7WZ01zgkWs3c0nd00"),  # type: ignore[arg-type]
        "amount_paid": 1500,
        "status": "paid",
    }
    fake.answer(
        stripe_list(
            [
                {
                    **invoice_json(id="in_1RkMkkB7WZ01zgkWs3c0nd00", amount=1500),
                    "payments": stripe_list([paid], "/v1/invoice_payments"),
                },
                invoice_json(id="in_1RkM6cB7WZ01zgkWf1rst000", amount=4000),
            ],
            "/v1/invoices",
        )
    )

    invoices = gateway.invoice_list(customer_id=CUSTOMER, limit=20)

    assert [(invoice.id, invoice.amount_paid) for invoice in invoices] == [
        ("in_1RkMkkB7WZ01zgkWs3c0nd00", 1500),
        ("in_1RkM6cB7WZ01zgkWf1rst000", 4000),
    ]
    assert invoices[0].payments == (
        InvoicePayment(payment_intent=INTENT, status="paid", amount_paid=1500),
    )
    assert invoices[1].payments == ()
    assert fake.sent == [
        Sent(
            "get",
            "/v1/invoices",
            {"customer": CUSTOMER, "limit": "20", "expand": ["data.payments"]},
        )
    ]


def test_it_pages_through_invoices_up_to_the_limit(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    fake.answer(
        stripe_list(
            [invoice_json(id=f"in_1RkMpage{n:016d}") for n in range(100)],
            "/v1/invoices",
            has_more=True,
        )
    )
    fake.answer(
        stripe_list(
            [invoice_json(id=f"in_1RkMpage{n:016d}") for n in range(100, 200)],
            "/v1/invoices",
            has_more=True,
        )
    )

    invoices = gateway.invoice_list(customer_id=CUSTOMER, limit=150)

    assert len(invoices) == 150
    assert invoices[-1].id == f"in_1RkMpage{149:016d}"
    assert fake.sent == [
        Sent(
            "get",
            "/v1/invoices",
            {"customer": CUSTOMER, "limit": "100", "expand": ["data.payments"]},
        ),
        Sent(
            "get",
            "/v1/invoices",
            {
                "customer": CUSTOMER,
                "limit": "100",
                "expand": ["data.payments"],
                "starting_after": f"in_1RkMpage{99:016d}",
            },
        ),
    ]


def test_it_retrieves_an_invoice(fake: FakeStripe, gateway: StripeGateway) -> None:
    fake.answer(invoice_json(status="open", attempt_count=2, subscription=SUBSCRIPTION))

    invoice = gateway.invoice_retrieve(invoice_id=INVOICE)

    assert fake.sent == [Sent("get", f"/v1/invoices/{INVOICE}", {})]
    assert (invoice.status, invoice.attempt_count, invoice.amount_remaining) == ("open", 2, 1000)
    assert invoice.subscription == SUBSCRIPTION


def test_it_pays_an_open_invoice_off_session(fake: FakeStripe, gateway: StripeGateway) -> None:
    fake.answer(invoice_json(status="paid", attempt_count=3))

    invoice = gateway.invoice_pay(invoice_id=INVOICE, idempotency_key="retry-in_1:3")

    assert invoice.paid
    assert invoice.paid_at == at(MID + 5)
    assert fake.sent == [
        Sent("post", f"/v1/invoices/{INVOICE}/pay", {"off_session": "true"}, "retry-in_1:3")
    ]


def test_it_raises_a_card_error_when_paying_an_invoice_is_declined(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    fake.answer(
        card_error_json(
            message="Your card does not support this type of purchase.",
            decline_code="transaction_not_allowed",
        ),
        402,
    )

    with pytest.raises(CardError) as caught:
        gateway.invoice_pay(invoice_id=INVOICE, idempotency_key="retry-in_1:4")

    assert caught.value.message == "Your card does not support this type of purchase."
    assert caught.value.decline_code == "transaction_not_allowed"
    assert caught.value.invoice_id == INVOICE
    assert fake.sent == [
        Sent("post", f"/v1/invoices/{INVOICE}/pay", {"off_session": "true"}, "retry-in_1:4")
    ]


# Errors that are not the card's


def test_it_maps_a_missing_object_to_a_gateway_error(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    fake.answer(invalid_request_json("No such invoice: 'in_missing'", param="id"), 404)

    with pytest.raises(GatewayError) as caught:
        gateway.invoice_retrieve(invoice_id="in_missing")

    assert not isinstance(caught.value, CardError)
    assert "No such invoice: 'in_missing'" in str(caught.value)
    assert "HTTP 404" in str(caught.value)


# https://docs.stripe.com/api/errors: 404 "the requested resource doesn't exist" and 400 "the
# request was unacceptable" cannot be healed by asking again; 429 "too many requests" and 401 "no
# valid API key" can (by waiting, or once the key is fixed).
ERRORS_AND_PERMANENCE = [
    (404, invalid_request_json("No such customer: 'cus_gone'", param="id"), True),
    (
        400,
        {
            "error": {
                "type": "invalid_request_error",
                "code": "parameter_invalid_integer",
                "message": "Invalid integer: many",
                "param": "quantity",
            }
        },
        True,
    ),
    (429, {"error": {"type": "invalid_request_error", "message": "Too many requests"}}, False),
    (401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key"}}, False),
]


@pytest.mark.parametrize("case", ERRORS_AND_PERMANENCE, ids=lambda case: str(case[0]))
def test_it_says_which_errors_waiting_cannot_heal(
    fake: FakeStripe, gateway: StripeGateway, case: tuple[int, dict[str, Any], bool]
) -> None:
    status, body, permanent = case
    fake.answer(body, status)

    with pytest.raises(GatewayError) as caught:
        gateway.subscription_retrieve(subscription_id=SUBSCRIPTION)

    assert caught.value.permanent is permanent
    assert caught.value.code == (body["error"].get("code") or "")
    assert f"HTTP {status}" in str(caught.value)


def test_it_maps_an_authentication_failure_to_a_gateway_error(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    fake.answer(
        {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided."}}, 401
    )

    with pytest.raises(GatewayError, match="AuthenticationError: Invalid API Key provided"):
        gateway.subscription_retrieve(subscription_id=SUBSCRIPTION)


def test_it_decodes_stripes_bracketed_form_encoding() -> None:
    assert decode_form(
        "items[0][id]=si_1&items[0][quantity]=5&expand[0]=latest_invoice&metadata[a]=&address="
    ) == {
        "items": [{"id": "si_1", "quantity": "5"}],
        "expand": ["latest_invoice"],
        "metadata": {"a": ""},
        "address": "",
    }


# Client configuration: "a StripeClient built without max_network_retries makes 0 retries", and
# the default RequestsClient waits 80 s (stripe-python _stripe_client.py, _http_client.py).


def test_it_sets_explicit_timeouts_and_retries() -> None:
    gateway = StripeGateway(api_key="sk_test_51KiloBillingFakeKey")
    requestor = gateway._client._requestor
    http_client = requestor._client
    assert isinstance(http_client, stripe.RequestsClient)
    assert http_client._timeout == (5, 20)
    assert requestor._options.max_network_retries == 2


# 3-D Secure on invoices.pay, in the three shapes Stripe reports it
# (https://docs.stripe.com/api/invoices/pay; https://docs.stripe.com/billing/subscriptions/overview
# "Payments requiring 3D Secure"; stripe-node#628 for invoice_payment_intent_requires_action).

HOSTED = f"https://invoice.stripe.com/i/acct_1KiloTest/test_{INVOICE}"
REQUIRES_ACTION = payment_intent_json(status="requires_action", last_payment_error=None)


def _charge_until_pay(fake: FakeStripe) -> None:
    fake.answer(invoice_json(status="draft", lines=[], amount=0))
    fake.answer(invoice_item_json(amount=1000))
    fake.answer(invoice_json(status="open"))


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(
            (
                card_error_json(
                    message="This payment requires additional user action before it can be "
                    "completed successfully.",
                    code="invoice_payment_intent_requires_action",
                    decline_code="",
                ),
                402,
            ),
            id="invoice_payment_intent_requires_action",
        ),
        pytest.param(
            (
                card_error_json(
                    message="Your card was declined. This transaction requires authentication.",
                    code="card_declined",
                    decline_code="authentication_required",
                ),
                402,
            ),
            id="authentication_required decline",
        ),
    ],
)
def test_it_reports_a_charge_waiting_for_authentication_with_the_hosted_page(
    fake: FakeStripe, gateway: StripeGateway, answer: tuple[dict[str, Any], int]
) -> None:
    _charge_until_pay(fake)
    fake.answer(*answer)
    fake.answer(invoice_json(status="open"))

    charge = _charge(gateway, "purchase-p_3ds")

    assert not charge.paid
    assert charge.failure is not None
    assert charge.failure.code == "authentication_required"
    assert charge.failure.needs_authentication
    assert charge.failure.action_url == HOSTED
    assert fake.sent[-1] == Sent("get", f"/v1/invoices/{INVOICE}", {})


def test_it_reports_an_answer_whose_payment_requires_action_as_waiting(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    _charge_until_pay(fake)
    fake.answer(invoice_json(status="open"))  # invoices.pay answered, but nothing was paid
    fake.answer(
        stripe_list(
            [invoice_payment_json(intent=REQUIRES_ACTION, invoice=INVOICE)], "/v1/invoice_payments"
        )
    )
    fake.answer(invoice_json(status="open"))

    charge = _charge(gateway, "purchase-p_3ds2")

    assert charge.failure is not None
    assert (charge.failure.code, charge.failure.action_url) == ("authentication_required", HOSTED)
    assert [sent.path for sent in fake.sent[-3:]] == [
        f"/v1/invoices/{INVOICE}/pay",
        "/v1/invoice_payments",
        f"/v1/invoices/{INVOICE}",
    ]


def test_it_pays_on_session_and_points_to_the_hosted_page_for_authentication(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    fake.answer(
        card_error_json(
            message="Authentication required.",
            code="invoice_payment_intent_requires_action",
            decline_code="",
        ),
        402,
    )
    fake.answer(invoice_json(status="open"))

    with pytest.raises(CardError) as caught:
        gateway.invoice_pay(invoice_id=INVOICE, idempotency_key="pay-now-1", off_session=False)

    assert caught.value.needs_authentication
    assert caught.value.action_url == HOSTED
    assert fake.sent == [
        Sent("post", f"/v1/invoices/{INVOICE}/pay", {"off_session": "false"}, "pay-now-1"),
        Sent("get", f"/v1/invoices/{INVOICE}", {}),
    ]


def test_it_reads_how_the_last_payment_attempt_ended(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    lost = payment_intent_json(
        status="requires_payment_method",
        last_payment_error={
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "lost_card",
            "message": "Your card was declined.",
        },
    )
    fake.answer(stripe_list([invoice_payment_json(intent=lost, invoice=INVOICE)], "/v1/x"))
    fake.answer(stripe_list([], "/v1/invoice_payments"))

    attempt = gateway.invoice_last_payment(invoice_id=INVOICE)

    assert attempt is not None
    assert (attempt.code, attempt.decline_code, attempt.hard) == (
        "card_declined",
        "lost_card",
        True,
    )
    assert gateway.invoice_last_payment(invoice_id="in_never") is None
    assert fake.sent[0] == Sent(
        "get",
        "/v1/invoice_payments",
        {"invoice": INVOICE, "limit": "1", "expand": ["data.payment.payment_intent"]},
    )


def test_it_voids_an_invoice_and_accepts_one_stripe_voided_already(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    # Stripe voids an expired pending update's invoice itself
    # (https://docs.stripe.com/billing/subscriptions/pending-updates-reference).
    fake.answer(invoice_json(status="void"))
    fake.answer(invalid_request_json("You can only void an open invoice."), 400)
    fake.answer(invoice_json(status="void"))

    assert gateway.invoice_void(invoice_id=INVOICE).status == "void"
    assert gateway.invoice_void(invoice_id=INVOICE).status == "void"
    assert [(sent.method, sent.path) for sent in fake.sent] == [
        ("post", f"/v1/invoices/{INVOICE}/void"),
        ("post", f"/v1/invoices/{INVOICE}/void"),
        ("get", f"/v1/invoices/{INVOICE}"),
    ]


def test_it_does_not_hide_a_refused_void_of_a_paid_invoice(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    fake.answer(invalid_request_json("You can only void an open invoice."), 400)
    fake.answer(invoice_json(status="paid"))

    with pytest.raises(GatewayError):
        gateway.invoice_void(invoice_id=INVOICE)


# Refunds and disputes. Charges and PaymentIntents name no invoice since 2025-03-31: the
# InvoicePayment links them (https://docs.stripe.com/api/invoice-payments/list).

REFUND = "re_1RkMrrB7WZ01zgkWref00001"
DISPUTE = "du_1RkMssB7WZ01zgkWdsp00001"
INTENT = "pi_3RkMccB7WZ01zgkW1d3cL1n3"


def refund_json(*, amount: int = 2500, status: str = "succeeded") -> dict[str, Any]:
    return {
        "id": REFUND,
        "object": "refund",
        "amount": amount,
        "balance_transaction": "txn_1RkMrr",
        "charge": "ch_3RkMccB7WZ01zgkW1ch00001",
        "created": MID,
        "currency": "usd",
        "metadata": {"purchase_id": "981"},
        "payment_intent": INTENT,
        "reason": "requested_by_customer",
        "status": status,
    }


def dispute_json(*, status: str = "needs_response") -> dict[str, Any]:
    return {
        "id": DISPUTE,
        "object": "dispute",
        "amount": 5000,
        "balance_transactions": [],
        "charge": "ch_3RkMccB7WZ01zgkW1ch00001",
        "created": MID,
        "currency": "usd",
        "evidence_details": {"due_by": MID + 86400 * 21, "has_evidence": False},
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
        "payment_intent": INTENT,
        "reason": "fraudulent",
        "status": status,
    }


def test_it_finds_the_invoice_a_payment_paid(fake: FakeStripe, gateway: StripeGateway) -> None:
    paid = {**invoice_payment_json(intent=INTENT, invoice=INVOICE), "status": "paid"}  # type: ignore[arg-type]
    fake.answer(stripe_list([paid], "/v1/invoice_payments"))

    assert gateway.payment_invoice_id(payment_intent=INTENT) == INVOICE
    assert fake.sent == [
        Sent(
            "get",
            "/v1/invoice_payments",
            {"payment": {"type": "payment_intent", "payment_intent": INTENT}, "limit": "1"},
        )
    ]


def test_it_refunds_part_of_an_invoices_payment_once(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    paid = {**invoice_payment_json(intent=INTENT, invoice=INVOICE), "status": "paid"}  # type: ignore[arg-type]
    fake.answer(stripe_list([paid], "/v1/invoice_payments"))
    fake.answer(refund_json())

    refund = gateway.refund_create(
        invoice_id=INVOICE,
        amount=2500,
        reason="requested_by_customer",
        metadata={"purchase_id": "981"},
        idempotency_key="purchase-981-refund-k1",
    )

    assert (refund.id, refund.amount, refund.payment_intent, refund.takes_money_back) == (
        REFUND,
        2500,
        INTENT,
        True,
    )
    assert fake.sent == [
        Sent("get", "/v1/invoice_payments", {"invoice": INVOICE, "status": "paid", "limit": "1"}),
        Sent(
            "post",
            "/v1/refunds",
            {
                "payment_intent": INTENT,
                "amount": "2500",
                "reason": "requested_by_customer",
                "metadata": {"purchase_id": "981"},
            },
            "purchase-981-refund-k1",
        ),
    ]


def test_it_lists_a_payments_refunds_and_reads_a_dispute(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    fake.answer(stripe_list([refund_json(), refund_json(status="failed")], "/v1/refunds"))
    fake.answer(dispute_json(status="lost"))

    refunds = gateway.refund_list(payment_intent=INTENT)
    dispute = gateway.dispute_retrieve(dispute_id=DISPUTE)

    assert [refund.takes_money_back for refund in refunds] == [True, False]
    assert (dispute.amount, dispute.status, dispute.withdraws_funds, dispute.won) == (
        5000,
        "lost",
        True,
        False,
    )
    assert fake.sent == [
        Sent("get", "/v1/refunds", {"payment_intent": INTENT, "limit": "100"}),
        Sent("get", f"/v1/disputes/{DISPUTE}", {}),
    ]


def test_it_makes_a_subscription_checkouts_card_the_customers_default(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    # "the collected payment method is set as the default_payment_method on the Subscription":
    # copied to the customer and cleared there, so that a card replaced later is the one used.
    session = checkout_session_json(mode="subscription", status="complete", payment_status="paid")
    session["subscription"] = {
        **subscription_json(),
        "default_payment_method": PM,
    }
    fake.answer(session)
    fake.answer(customer_json(default_payment_method=PM))
    fake.answer(subscription_json())

    gateway.checkout_session_save_card(session_id=SESSION)

    assert fake.sent[1:] == [
        Sent(
            "post",
            f"/v1/customers/{CUSTOMER}",
            {"invoice_settings": {"default_payment_method": PM}},
            GENERATED,
        ),
        Sent(
            "post", f"/v1/subscriptions/{SUBSCRIPTION}", {"default_payment_method": ""}, GENERATED
        ),
    ]


@pytest.mark.parametrize(
    "case",
    [
        ("GB", "gb 123 456 789", "gb_vat", "GB123456789"),
        ("CH", "CHE-123.456.789 MWST", "ch_vat", "CHE-123.456.789 MWST"),
        ("US", "123456789", "us_ein", "12-3456789"),
    ],
)
def test_it_sends_each_countrys_tax_id_type(
    fake: FakeStripe, gateway: StripeGateway, case: tuple[str, str, str, str]
) -> None:
    country, typed, tax_type, value = case
    # The type follows the country (https://docs.stripe.com/billing/customer/tax-ids).
    matched = tax_id_for(country=country, value=typed)
    fake.answer(customer_json())

    gateway.customer_create(
        details=CustomerDetails(
            name="Acme", email="ap@acme.example", tax_id=matched.value, tax_id_type=matched.type
        ),
        metadata={},
        idempotency_key="k",
    )

    assert fake.sent[0].params["tax_id_data"] == [{"type": tax_type, "value": value}]


# What the reconciler reads: every page of each list, each page after a token of the read bucket


def charge_json(
    *, id: str, intent: str, amount: int = 5000, refunded: int = 0, disputed: bool = False
) -> dict[str, Any]:
    return {
        "id": id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": refunded,
        "captured": True,
        "created": MID,
        "currency": "usd",
        "customer": CUSTOMER,
        "disputed": disputed,
        "livemode": False,
        "metadata": {},
        "paid": True,
        "payment_intent": intent,
        "refunded": refunded >= amount,
        "status": "succeeded",
    }


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the tokens taken from the process's read bucket."""
    taken: list[int] = []

    class Counting:
        def take(self) -> float:
            taken.append(1)
            return 0.0

    monkeypatch.setattr("payments.stripe_gateway.gateway_reads", Counting)
    return taken


def test_it_retrieves_a_customer(
    fake: FakeStripe, gateway: StripeGateway, reads: list[int]
) -> None:
    fake.answer(customer_json())

    customer = gateway.customer_retrieve(customer_id=CUSTOMER)

    assert customer == Customer(
        id=CUSTOMER,
        deleted=False,
        name="Acme Robotics",
        email="billing@acme.example",
        metadata={"organization": "42"},
    )
    assert fake.sent == [Sent("get", f"/v1/customers/{CUSTOMER}", {})]
    assert reads == [1]


def test_it_reports_a_deleted_customer_and_an_unknown_one_as_gone(
    fake: FakeStripe, gateway: StripeGateway, reads: list[int]
) -> None:
    # A deleted customer is still answered, as a stub saying so
    # (https://docs.stripe.com/api/customers/retrieve); an id Stripe never had is a 404.
    fake.answer({"id": CUSTOMER, "object": "customer", "deleted": True})
    fake.answer(invalid_request_json("No such customer: 'cus_gone'", param="id"), 404)

    assert gateway.customer_retrieve(customer_id=CUSTOMER).deleted
    assert gateway.customer_retrieve(customer_id="cus_gone") == Customer(
        id="cus_gone", deleted=True
    )


def test_it_does_not_take_an_outage_for_a_deleted_customer(
    fake: FakeStripe, gateway: StripeGateway, reads: list[int]
) -> None:
    fake.answer(
        {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided."}}, 401
    )

    with pytest.raises(GatewayError):
        gateway.customer_retrieve(customer_id=CUSTOMER)


def test_it_lists_every_subscription_of_a_customer_page_by_page(
    fake: FakeStripe, gateway: StripeGateway, reads: list[int]
) -> None:
    # Without status=all, canceled subscriptions are left out
    # (https://docs.stripe.com/api/subscriptions/list); pages follow starting_after
    # (https://docs.stripe.com/api/pagination).
    first = [{**subscription_json(), "id": f"sub_1RkMpage{n:015d}"} for n in range(100)]
    second = [{**subscription_json(status="canceled", quantity=7), "id": "sub_1RkMlast"}]
    fake.answer(stripe_list(first, "/v1/subscriptions", has_more=True))
    fake.answer(stripe_list(second, "/v1/subscriptions"))

    subscriptions = gateway.subscription_list(customer_id=CUSTOMER)

    assert len(subscriptions) == 101
    assert (subscriptions[-1].id, subscriptions[-1].status, subscriptions[-1].quantity) == (
        "sub_1RkMlast",
        "canceled",
        7,
    )
    assert fake.sent == [
        Sent("get", "/v1/subscriptions", {"customer": CUSTOMER, "status": "all", "limit": "100"}),
        Sent(
            "get",
            "/v1/subscriptions",
            {
                "customer": CUSTOMER,
                "status": "all",
                "limit": "100",
                "starting_after": f"sub_1RkMpage{99:015d}",
            },
        ),
    ]
    assert reads == [1, 1]


def test_it_lists_every_invoice_when_asked_for_no_limit(
    fake: FakeStripe, gateway: StripeGateway, reads: list[int]
) -> None:
    fake.answer(
        stripe_list(
            [invoice_json(id=f"in_1RkMpage{n:016d}") for n in range(100)],
            "/v1/invoices",
            has_more=True,
        )
    )
    fake.answer(stripe_list([invoice_json(id="in_1RkMlast")], "/v1/invoices"))

    invoices = gateway.invoice_list(customer_id=CUSTOMER, limit=None)

    assert [invoice.id for invoice in invoices[-2:]] == [f"in_1RkMpage{99:016d}", "in_1RkMlast"]
    assert [sent.params.get("starting_after") for sent in fake.sent] == [
        None,
        f"in_1RkMpage{99:016d}",
    ]
    assert reads == [1, 1]


def test_it_lists_a_customers_payments_and_a_payments_disputes(
    fake: FakeStripe, gateway: StripeGateway, reads: list[int]
) -> None:
    # Refunds and disputes cannot be listed by customer; the customer's charges say which
    # payments have any (https://docs.stripe.com/api/charges/list,
    # https://docs.stripe.com/api/disputes/list).
    fake.answer(
        stripe_list(
            [
                charge_json(id="ch_1", intent=INTENT, refunded=2500, disputed=True),
                charge_json(id="ch_2", intent="pi_3RkMsecond"),
            ],
            "/v1/charges",
            has_more=True,
        )
    )
    fake.answer(stripe_list([charge_json(id="ch_3", intent="pi_3RkMthird")], "/v1/charges"))
    fake.answer(stripe_list([dispute_json(status="won")], "/v1/disputes"))

    payments = gateway.payment_list(customer_id=CUSTOMER)
    disputes = gateway.dispute_list(payment_intent=INTENT)

    assert payments[0] == Payment(
        id="ch_1",
        payment_intent=INTENT,
        amount=5000,
        amount_refunded=2500,
        disputed=True,
        status="succeeded",
        created=at(MID),
    )
    assert [payment.id for payment in payments] == ["ch_1", "ch_2", "ch_3"]
    assert [(d.id, d.status, d.won) for d in disputes] == [(DISPUTE, "won", True)]
    assert isinstance(disputes[0], Dispute)
    assert fake.sent == [
        Sent("get", "/v1/charges", {"customer": CUSTOMER, "limit": "100"}),
        Sent(
            "get", "/v1/charges", {"customer": CUSTOMER, "limit": "100", "starting_after": "ch_2"}
        ),
        Sent("get", "/v1/disputes", {"payment_intent": INTENT, "limit": "100"}),
    ]
    assert reads == [1, 1, 1]


def test_it_waits_for_the_read_bucket_before_each_page(
    fake: FakeStripe, gateway: StripeGateway, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """25 reads a second by default: the 26th read of a burst waits 40 ms for its token."""
    clock = [1000.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    settings.GATEWAY_READS_PER_SECOND = 25
    bucket = TokenBucket(rate=25, clock=lambda: clock[0], sleep=sleep)
    monkeypatch.setattr("payments.stripe_gateway.gateway_reads", lambda: bucket)
    for page in range(26):
        more = page < 25
        fake.answer(
            stripe_list(
                [charge_json(id=f"ch_{page}", intent=f"pi_{page}")], "/v1/charges", has_more=more
            )
        )

    assert len(gateway.payment_list(customer_id=CUSTOMER)) == 26
    assert slept == [pytest.approx(0.04)]
