"""BillingGateway: the only code that talks to a payment provider.

Two implementations: `StripeGateway` (the official library) and `SandboxGateway` (local, database
backed, Stripe's semantics). Both speak in Stripe-shaped dicts underneath; the parsers in this
module turn those into the small typed records the product uses, so that webhook handlers and
gateway answers read the same fields the same way.

Amounts are integer cents, times are aware UTC datetimes.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

PLAN_INTERVAL = "month"


class GatewayError(Exception):
    """The provider could not do what was asked (not a card problem). `code` is the provider's
    error code when it gave one (Stripe's `resource_missing`, `customer_tax_location_invalid`,
    ...), `http_status` its HTTP status (0 when no answer came), so that callers can tell an
    object that is gone from a provider that did not answer. `permanent` when asking again cannot
    help: the object does not exist (404 `resource_missing`) or the request is invalid (400
    `invalid_request_error`); a webhook event failing so is retried a bounded number of times
    and then set aside for a person (payments.dispatch). Network trouble, rate limits and the
    provider's own errors are not permanent: waiting heals them."""

    def __init__(
        self,
        message: str = "",
        *,
        code: str = "",
        http_status: int = 0,
        permanent: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status
        if permanent is None:
            permanent = code == RESOURCE_MISSING or http_status in PERMANENT_HTTP_STATUSES
        self.permanent = permanent

    @property
    def missing(self) -> bool:
        """The object named in the call does not exist (any more): a customer deleted in the
        provider's dashboard, say. Waiting does not heal it."""
        return self.code == RESOURCE_MISSING


# Stripe's code for "No such customer / invoice / ...": https://docs.stripe.com/error-codes
RESOURCE_MISSING = "resource_missing"
# What asking again cannot change: a request refused as invalid, an object that does not exist
# (https://docs.stripe.com/api/errors).
PERMANENT_HTTP_STATUSES = frozenset({400, 404})


# Stripe's own list of decline codes it never retries automatically ("the scheduled retries
# continue but the payment only executes if you obtain a new payment method"):
# https://docs.stripe.com/billing/revenue-recovery/smart-retries#non-retryable-decline-codes
NON_RETRYABLE_DECLINE_CODES = frozenset(
    {
        "incorrect_number",
        "lost_card",
        "pickup_card",
        "stolen_card",
        "revocation_of_authorization",
        "revocation_of_all_authorizations",
        "authentication_required",
        "highest_risk_level",
        "transaction_not_allowed",
    }
)
# The product's hard declines, which start grace at the first failure (DESIGN.md, the lifecycle):
# Stripe's non-retryable codes except authentication (which is not a decline: the payer is asked
# to confirm), plus an expired card, which Stripe retries but which never pays without the
# customer giving a new card.
HARD_DECLINE_CODES = (NON_RETRYABLE_DECLINE_CODES - {"authentication_required"}) | {"expired_card"}
# The codes under which a gateway says the issuer wants the payer to authenticate (3-D Secure).
# Both gateways report that case as CardError(code=AUTHENTICATION_REQUIRED, action_url=...).
AUTHENTICATION_REQUIRED = "authentication_required"
AUTHENTICATION_CODES = frozenset(
    {
        AUTHENTICATION_REQUIRED,
        "invoice_payment_intent_requires_action",
        "subscription_payment_intent_requires_action",
        "payment_intent_authentication_failure",
    }
)
# The product's code for "no card to charge" (Stripe does not retry such an invoice either).
NO_PAYMENT_METHOD = "payment_method_missing"
AUTHENTICATION_MESSAGE = "Your bank needs you to confirm this payment."


class CardError(GatewayError):
    """The card was declined or could not be charged. `message` is fit to show to the user.
    `action_url` is set when the payer must authenticate (3-D Secure) there to complete it."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "card_declined",
        decline_code: str = "",
        invoice_id: str = "",
        action_url: str = "",
    ) -> None:
        super().__init__(message, code=code, http_status=402)
        self.message = message
        self.code = code
        self.decline_code = decline_code
        self.invoice_id = invoice_id
        self.action_url = action_url

    @property
    def needs_authentication(self) -> bool:
        return needs_authentication(code=self.code, decline_code=self.decline_code)

    @property
    def hard(self) -> bool:
        return hard_decline(code=self.code, decline_code=self.decline_code)


def needs_authentication(*, code: str, decline_code: str = "", status: str = "") -> bool:
    """Whether a failed payment waits for the payer to authenticate rather than being declined."""
    return (
        status == "requires_action"
        or code in AUTHENTICATION_CODES
        or decline_code == AUTHENTICATION_REQUIRED
    )


def hard_decline(*, code: str, decline_code: str = "") -> bool:
    """A decline that no retry with the same card can fix, or no card at all."""
    return code == NO_PAYMENT_METHOD or bool({code, decline_code} & HARD_DECLINE_CODES)


@dataclass(frozen=True)
class Address:
    line1: str = ""
    line2: str = ""
    city: str = ""
    postal_code: str = ""
    state: str = ""
    country: str = ""

    def as_stripe(self) -> dict[str, str]:
        return {
            "line1": self.line1,
            "line2": self.line2,
            "city": self.city,
            "postal_code": self.postal_code,
            "state": self.state,
            "country": self.country,
        }


@dataclass(frozen=True)
class CustomerDetails:
    """What appears on invoices: the company, its billing email, address and tax ID. The tax ID
    travels with its Stripe `tax_id_type` (payments.tax_ids decides it from the country)."""

    name: str
    email: str
    address: Address | None = None
    tax_id: str = ""
    tax_id_type: str = ""

    def __post_init__(self) -> None:
        if self.tax_id and not self.tax_id_type:
            raise ValueError("A tax ID needs its type (payments.tax_ids.tax_id_type).")


@dataclass(frozen=True)
class PaymentMethod:
    id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True)
class InvoiceLine:
    description: str
    amount: int
    quantity: int
    proration: bool
    period_start: datetime | None
    period_end: datetime | None


@dataclass(frozen=True)
class InvoicePayment:
    """A payment made against an invoice (Stripe's InvoicePayment): which PaymentIntent, and
    whether it paid the invoice (`paid`), is still under way (`open`) or was `canceled`."""

    payment_intent: str
    status: str
    amount_paid: int


@dataclass(frozen=True)
class Invoice:
    id: str
    number: str
    customer: str
    status: str  # draft, open, paid, void, uncollectible
    billing_reason: str
    amount_due: int
    amount_paid: int
    amount_remaining: int
    currency: str
    attempt_count: int
    next_payment_attempt: datetime | None
    period_start: datetime | None
    period_end: datetime | None
    lines: tuple[InvoiceLine, ...]
    hosted_invoice_url: str
    invoice_pdf: str
    subscription: str
    metadata: dict[str, str]
    created: datetime
    paid_at: datetime | None
    # False for a draft the provider will not finalize and charge by itself: Stripe leaves the
    # renewals of an unpaid subscription so (https://docs.stripe.com/billing/subscriptions/
    # overview#unpaid). True for any invoice that is not a draft.
    auto_advance: bool = True
    # Why the provider could not finalize the draft (its `last_finalization_error`), if it
    # could not: https://docs.stripe.com/api/invoices/object#invoice_object-last_finalization_error
    finalization_error_code: str = ""
    finalization_error: str = ""
    # The payments made against it (Stripe's InvoicePayments), when the answer included them
    # (a list of invoices read with `expand=data.payments`; webhook payloads do not).
    payments: tuple[InvoicePayment, ...] = ()

    @property
    def paid(self) -> bool:
        return self.status == "paid"


@dataclass(frozen=True)
class Subscription:
    id: str
    customer: str
    status: str  # incomplete, active, past_due, unpaid, canceled, incomplete_expired
    price: str
    unit_amount: int
    quantity: int
    current_period_start: datetime
    current_period_end: datetime
    cancel_at_period_end: bool
    pending_quantity: int | None
    latest_invoice: str
    metadata: dict[str, str]
    created: datetime


@dataclass(frozen=True)
class Customer:
    """The gateway's customer. `deleted` when it was deleted (Stripe keeps a stub that says so)
    or the gateway no longer knows the id at all."""

    id: str
    deleted: bool
    name: str = ""
    email: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Payment:
    """A card payment of a customer (Stripe's Charge): what it captured, how much of it was
    refunded and whether it is disputed. Its refunds and disputes are listed by its
    PaymentIntent."""

    id: str
    payment_intent: str
    amount: int
    amount_refunded: int
    disputed: bool
    status: str  # succeeded, pending, failed
    created: datetime


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str
    status: str  # open, complete, expired
    mode: str  # payment, subscription
    payment_status: str  # paid, unpaid, no_payment_required
    customer: str
    subscription: str
    invoice: str
    payment_intent: str
    amount_total: int
    metadata: dict[str, str]


@dataclass(frozen=True)
class ProrationPreview:
    """What a quantity change would charge now, and the recurring amount from the next period."""

    amount_due: int
    proration_date: datetime
    lines: tuple[InvoiceLine, ...]
    next_period_amount: int


@dataclass(frozen=True)
class QuantityChange:
    subscription: Subscription
    invoice: Invoice | None  # None for decreases (no proration, no invoice)


@dataclass(frozen=True)
class Price:
    id: str
    unit_amount: int
    currency: str
    interval: str


@dataclass(frozen=True)
class PaymentAttempt:
    """How the latest payment attempt on an invoice ended (its PaymentIntent), as the gateway
    tells it: `status` is the PaymentIntent's (succeeded, requires_action,
    requires_payment_method, ...), `code` and `decline_code` those of its last error."""

    payment_intent: str
    status: str
    code: str = ""
    decline_code: str = ""
    message: str = ""

    @property
    def needs_authentication(self) -> bool:
        return needs_authentication(
            code=self.code, decline_code=self.decline_code, status=self.status
        )

    @property
    def hard(self) -> bool:
        return not self.needs_authentication and hard_decline(
            code=self.code, decline_code=self.decline_code
        )


@dataclass(frozen=True)
class Refund:
    """Money given back on a payment (Stripe's Refund). `amount` in cents."""

    id: str
    amount: int
    currency: str
    status: str  # pending, requires_action, succeeded, failed, canceled
    reason: str
    payment_intent: str
    charge: str
    metadata: dict[str, str]
    created: datetime

    @property
    def takes_money_back(self) -> bool:
        """Failed and canceled refunds return nothing; the others do (or are about to)."""
        return self.status not in ("failed", "canceled")


@dataclass(frozen=True)
class Dispute:
    """A cardholder's dispute of a payment (Stripe's Dispute). `amount` in cents: the disputed
    amount, which can differ from the charge's."""

    id: str
    amount: int
    currency: str
    status: str  # warning_*, needs_response, under_review, won, lost, prevented
    reason: str
    payment_intent: str
    charge: str
    created: datetime

    @property
    def withdraws_funds(self) -> bool:
        """A chargeback: the money left the account when it opened. Inquiries (warning_*) and
        prevented disputes move none."""
        return not self.status.startswith("warning_") and self.status != "prevented"

    @property
    def won(self) -> bool:
        return self.status == "won"


@dataclass(frozen=True)
class Charge:
    """A one-off purchase as an invoice paid with the saved card."""

    invoice: Invoice
    failure: CardError | None = field(default=None)

    @property
    def paid(self) -> bool:
        return self.invoice.paid


class BillingGateway(abc.ABC):
    """Every operation that moves money takes an idempotency key: the same key, the same result."""

    name: str

    @abc.abstractmethod
    def now(self) -> datetime:
        """The provider's clock, which its periods, renewals and retries follow."""

    # Customers and payment methods
    @abc.abstractmethod
    def customer_create(
        self, *, details: CustomerDetails, metadata: dict[str, str], idempotency_key: str
    ) -> str: ...

    @abc.abstractmethod
    def customer_update(self, *, customer_id: str, details: CustomerDetails) -> None: ...

    @abc.abstractmethod
    def customer_retrieve(self, *, customer_id: str) -> Customer:
        """The customer as the gateway has it; `deleted` when it is gone (deleted in the
        gateway's dashboard, or unknown there)."""

    @abc.abstractmethod
    def payment_method_default(self, *, customer_id: str) -> PaymentMethod | None: ...

    @abc.abstractmethod
    def payment_method_update_url(self, *, customer_id: str, return_url: str) -> str:
        """Where the customer replaces the saved card (Customer Portal / the sandbox page)."""

    @abc.abstractmethod
    def billing_portal_url(self, *, customer_id: str, return_url: str) -> str: ...

    # Prices
    @abc.abstractmethod
    def price_ensure(
        self, *, lookup_key: str, product_name: str, unit_amount: int, currency: str = "usd"
    ) -> Price:
        """The monthly recurring price with this lookup key, created once."""

    # One-off purchases
    @abc.abstractmethod
    def charge(
        self,
        *,
        customer_id: str,
        amount: int,
        currency: str,
        description: str,
        metadata: dict[str, str],
        idempotency_key: str,
        return_url: str = "",
    ) -> Charge:
        """Invoice item + invoice, finalized and paid off-session with the saved card. A decline
        comes back as `Charge.failure` with the invoice left open, never as an exception; when the
        bank wants the payer to authenticate, the failure's `action_url` is where they do it
        (and come back to `return_url`, where the gateway's page allows)."""

    @abc.abstractmethod
    def checkout_payment(
        self,
        *,
        customer_id: str,
        amount: int,
        currency: str,
        description: str,
        metadata: dict[str, str],
        success_url: str,
        cancel_url: str,
        idempotency_key: str,
    ) -> CheckoutSession:
        """Checkout in payment mode, creating an invoice and saving the card for next time."""

    @abc.abstractmethod
    def checkout_subscription(
        self,
        *,
        customer_id: str,
        price_id: str,
        quantity: int,
        metadata: dict[str, str],
        success_url: str,
        cancel_url: str,
        idempotency_key: str,
    ) -> CheckoutSession: ...

    @abc.abstractmethod
    def checkout_session_retrieve(self, *, session_id: str) -> CheckoutSession: ...

    @abc.abstractmethod
    def checkout_session_save_card(self, *, session_id: str) -> None:
        """Make the card a completed Checkout collected the customer's default, so that later
        off-session charges (purchases, top-ups, seat additions) use it."""

    # Subscriptions
    @abc.abstractmethod
    def subscription_create(
        self,
        *,
        customer_id: str,
        price_id: str,
        quantity: int,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> Subscription:
        """Charged at once with the saved card; raises CardError if the first invoice fails."""

    @abc.abstractmethod
    def subscription_retrieve(self, *, subscription_id: str) -> Subscription: ...

    @abc.abstractmethod
    def subscription_list(self, *, customer_id: str) -> list[Subscription]:
        """Every subscription of the customer, whatever its status (ended ones too), newest
        first, read page by page."""

    @abc.abstractmethod
    def subscription_preview_quantity(
        self, *, subscription_id: str, quantity: int, proration_date: datetime
    ) -> ProrationPreview: ...

    @abc.abstractmethod
    def subscription_change_quantity(
        self,
        *,
        subscription_id: str,
        quantity: int,
        proration_date: datetime | None,
        idempotency_key: str,
    ) -> QuantityChange:
        """Increases are invoiced at once and applied only when paid (`pending_if_incomplete`);
        decreases apply at once without proration. A failed increase raises CardError."""

    @abc.abstractmethod
    def subscription_cancel_at_period_end(self, *, subscription_id: str) -> Subscription: ...

    @abc.abstractmethod
    def subscription_resume(self, *, subscription_id: str) -> Subscription: ...

    # Invoices
    @abc.abstractmethod
    def invoice_list(self, *, customer_id: str, limit: int | None = 100) -> list[Invoice]:
        """The customer's invoices, newest first, with the payments made against each
        (`Invoice.payments`), read page by page; `limit=None` reads them all."""

    @abc.abstractmethod
    def invoice_retrieve(self, *, invoice_id: str) -> Invoice: ...

    @abc.abstractmethod
    def invoice_finalize(self, *, invoice_id: str) -> Invoice:
        """Finalize a draft (it gets its number and can be paid) without charging it; an invoice
        already finalized is returned as it is. GatewayError (with the provider's `code`) when it
        cannot be finalized, e.g. a billing address its tax rules reject."""

    @abc.abstractmethod
    def invoice_pay(
        self,
        *,
        invoice_id: str,
        idempotency_key: str,
        off_session: bool = True,
        return_url: str = "",
    ) -> Invoice:
        """Pay an open invoice now with the saved card; raises CardError on a decline (with its
        `action_url` when the payer must authenticate first)."""

    @abc.abstractmethod
    def invoice_void(self, *, invoice_id: str) -> Invoice:
        """Void an open invoice so that nobody can pay it any more; an invoice already void is
        returned as it is."""

    @abc.abstractmethod
    def invoice_last_payment(self, *, invoice_id: str) -> PaymentAttempt | None:
        """How the invoice's latest payment attempt ended; None when it was never attempted."""

    # Refunds and disputes
    @abc.abstractmethod
    def payment_invoice_id(self, *, payment_intent: str) -> str:
        """The invoice a payment (PaymentIntent) paid, or "" when it paid none."""

    @abc.abstractmethod
    def refund_create(
        self,
        *,
        invoice_id: str,
        amount: int,
        reason: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> Refund:
        """Give back `amount` cents of a paid invoice's payment to the card it came from.
        `reason`: duplicate, fraudulent or requested_by_customer."""

    @abc.abstractmethod
    def refund_list(self, *, payment_intent: str) -> list[Refund]:
        """Every refund of a payment, newest first."""

    @abc.abstractmethod
    def dispute_retrieve(self, *, dispute_id: str) -> Dispute: ...

    @abc.abstractmethod
    def payment_list(self, *, customer_id: str) -> list[Payment]:
        """Every card payment (charge) of the customer, newest first, read page by page: where
        its refunds and disputes are to be looked for."""

    @abc.abstractmethod
    def dispute_list(self, *, payment_intent: str) -> list[Dispute]:
        """Every dispute of a payment, newest first."""


# Parsers: Stripe-shaped dicts (API answers, webhook payloads, sandbox objects) into records.


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), tz=UTC) if value else None


def object_id(value: Any) -> str:
    """An expandable field: either an id or the object itself."""
    if isinstance(value, dict):
        return str(value.get("id") or "")
    return str(value or "")


def parse_payment_method(data: dict[str, Any]) -> PaymentMethod:
    card = data.get("card") or {}
    return PaymentMethod(
        id=data["id"],
        brand=card.get("brand") or "",
        last4=card.get("last4") or "",
        exp_month=int(card.get("exp_month") or 0),
        exp_year=int(card.get("exp_year") or 0),
    )


def parse_invoice_line(data: dict[str, Any]) -> InvoiceLine:
    parent = data.get("parent") or {}
    details = parent.get("subscription_item_details") or parent.get("invoice_item_details") or {}
    period = data.get("period") or {}
    return InvoiceLine(
        description=data.get("description") or "",
        amount=int(data.get("amount") or 0),
        quantity=int(data.get("quantity") or (data.get("pricing") or {}).get("quantity") or 1),
        proration=bool(details.get("proration") or data.get("proration")),
        period_start=_ts(period.get("start")),
        period_end=_ts(period.get("end")),
    )


def invoice_subscription_id(data: dict[str, Any]) -> str:
    parent = data.get("parent") or {}
    details = parent.get("subscription_details") or {}
    return object_id(details.get("subscription") or data.get("subscription"))


def parse_invoice_payment(data: dict[str, Any]) -> InvoicePayment:
    payment = data.get("payment") or {}
    return InvoicePayment(
        payment_intent=object_id(payment.get("payment_intent")),
        status=data.get("status") or "open",
        amount_paid=int(data.get("amount_paid") or 0),
    )


def parse_invoice(data: dict[str, Any]) -> Invoice:
    transitions = data.get("status_transitions") or {}
    finalization_error = data.get("last_finalization_error") or {}
    lines = (data.get("lines") or {}).get("data") or []
    payments = (data.get("payments") or {}).get("data") or []
    return Invoice(
        id=data["id"],
        number=data.get("number") or "",
        customer=object_id(data.get("customer")),
        status=data.get("status") or "draft",
        billing_reason=data.get("billing_reason") or "",
        amount_due=int(data.get("amount_due") or 0),
        amount_paid=int(data.get("amount_paid") or 0),
        amount_remaining=int(data.get("amount_remaining") or 0),
        currency=data.get("currency") or "usd",
        attempt_count=int(data.get("attempt_count") or 0),
        next_payment_attempt=_ts(data.get("next_payment_attempt")),
        period_start=_ts(data.get("period_start")),
        period_end=_ts(data.get("period_end")),
        lines=tuple(parse_invoice_line(line) for line in lines),
        hosted_invoice_url=data.get("hosted_invoice_url") or "",
        invoice_pdf=data.get("invoice_pdf") or "",
        subscription=invoice_subscription_id(data),
        metadata=dict(data.get("metadata") or {}),
        created=_ts(data.get("created")) or datetime.now(tz=UTC),
        paid_at=_ts(transitions.get("paid_at")),
        # Read for drafts only, where it says whether the gateway finalizes and charges the
        # invoice by itself; Stripe turns it off on invoices it has done with, which says nothing.
        auto_advance=data.get("status") != "draft" or data.get("auto_advance") is not False,
        finalization_error_code=str(
            finalization_error.get("code") or finalization_error.get("type") or ""
        )[:60],
        finalization_error=str(finalization_error.get("message") or "")[:300],
        payments=tuple(parse_invoice_payment(payment) for payment in payments),
    )


def parse_subscription(data: dict[str, Any]) -> Subscription:
    item = ((data.get("items") or {}).get("data") or [{}])[0]
    price = item.get("price") or {}
    pending = (data.get("pending_update") or {}).get("subscription_items") or []
    return Subscription(
        id=data["id"],
        customer=object_id(data.get("customer")),
        status=data.get("status") or "incomplete",
        price=object_id(price),
        unit_amount=int(price.get("unit_amount") or 0),
        quantity=int(item.get("quantity") or 0),
        current_period_start=_ts(item.get("current_period_start")) or datetime.now(tz=UTC),
        current_period_end=_ts(item.get("current_period_end")) or datetime.now(tz=UTC),
        cancel_at_period_end=bool(data.get("cancel_at_period_end")),
        pending_quantity=int(pending[0]["quantity"]) if pending else None,
        latest_invoice=object_id(data.get("latest_invoice")),
        metadata=dict(data.get("metadata") or {}),
        created=_ts(data.get("created")) or datetime.now(tz=UTC),
    )


def parse_customer(data: dict[str, Any]) -> Customer:
    return Customer(
        id=data["id"],
        deleted=bool(data.get("deleted")),
        name=data.get("name") or "",
        email=data.get("email") or "",
        metadata=dict(data.get("metadata") or {}),
    )


def parse_payment(data: dict[str, Any]) -> Payment:
    """A Charge."""
    return Payment(
        id=data["id"],
        payment_intent=object_id(data.get("payment_intent")),
        amount=int(data.get("amount") or 0),
        amount_refunded=int(data.get("amount_refunded") or 0),
        disputed=bool(data.get("disputed")),
        status=data.get("status") or "succeeded",
        created=_ts(data.get("created")) or datetime.now(tz=UTC),
    )


def parse_checkout_session(data: dict[str, Any]) -> CheckoutSession:
    return CheckoutSession(
        id=data["id"],
        url=data.get("url") or "",
        status=data.get("status") or "open",
        mode=data.get("mode") or "payment",
        payment_status=data.get("payment_status") or "unpaid",
        customer=object_id(data.get("customer")),
        subscription=object_id(data.get("subscription")),
        invoice=object_id(data.get("invoice")),
        payment_intent=object_id(data.get("payment_intent")),
        amount_total=int(data.get("amount_total") or 0),
        metadata=dict(data.get("metadata") or {}),
    )


def parse_refund(data: dict[str, Any]) -> Refund:
    return Refund(
        id=data["id"],
        amount=int(data.get("amount") or 0),
        currency=data.get("currency") or "usd",
        status=data.get("status") or "succeeded",
        reason=data.get("reason") or "",
        payment_intent=object_id(data.get("payment_intent")),
        charge=object_id(data.get("charge")),
        metadata=dict(data.get("metadata") or {}),
        created=_ts(data.get("created")) or datetime.now(tz=UTC),
    )


def parse_dispute(data: dict[str, Any]) -> Dispute:
    return Dispute(
        id=data["id"],
        amount=int(data.get("amount") or 0),
        currency=data.get("currency") or "usd",
        status=data.get("status") or "needs_response",
        reason=data.get("reason") or "",
        payment_intent=object_id(data.get("payment_intent")),
        charge=object_id(data.get("charge")),
        created=_ts(data.get("created")) or datetime.now(tz=UTC),
    )


def parse_payment_attempt(intent: dict[str, Any]) -> PaymentAttempt:
    """A PaymentIntent as the outcome of an invoice's payment attempt."""
    error = intent.get("last_payment_error") or {}
    code = error.get("code") or ""
    if not error and not intent.get("payment_method") and intent.get("status") != "succeeded":
        # Nothing was charged because there was nothing to charge.
        code = NO_PAYMENT_METHOD
    return PaymentAttempt(
        payment_intent=str(intent.get("id") or ""),
        status=intent.get("status") or "",
        code=code,
        decline_code=error.get("decline_code") or "",
        message=error.get("message") or "",
    )


def parse_price(data: dict[str, Any]) -> Price:
    return Price(
        id=data["id"],
        unit_amount=int(data.get("unit_amount") or 0),
        currency=data.get("currency") or "usd",
        interval=(data.get("recurring") or {}).get("interval") or PLAN_INTERVAL,
    )
