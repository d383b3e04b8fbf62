"""The sandbox's behaviour: Stripe's state machines, pro-ration, renewals and retries, refunds,
disputes and 3-D Secure, each change announced as a Stripe-shaped event delivered to the app's
webhook endpoint.

Everything reads time from `now()`, the real clock plus the offset `sandbox_advance` adds.
Where the sandbox knowingly differs from Stripe, docs/decisions.md says so and why.
"""

import calendar
import random
import re
import secrets
import string
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone

from payments.gateway import (
    AUTHENTICATION_MESSAGE,
    AUTHENTICATION_REQUIRED,
    NO_PAYMENT_METHOD,
    NON_RETRYABLE_DECLINE_CODES,
    CardError,
    GatewayError,
)
from payments.queue import enqueue_after_commit
from payments.sandbox import chaos, objects
from payments.sandbox.models import (
    SandboxCheckoutSession,
    SandboxClock,
    SandboxCustomer,
    SandboxDispute,
    SandboxEvent,
    SandboxInvoice,
    SandboxPaymentMethod,
    SandboxRefund,
    SandboxSubscription,
)

# Days after the first failure on which Stripe's automatic collection tries an invoice again.
RETRY_SCHEDULE_DAYS = (1, 3, 5)
PENDING_UPDATE_LIFETIME = timedelta(hours=23)
RENEWAL_FINALIZE_DELAY = timedelta(hours=1)
# "By default, a Checkout Session expires 24 hours after creation"
# (https://docs.stripe.com/api/checkout/sessions/create#create_checkout_session-expires_at).
CHECKOUT_LIFETIME = timedelta(hours=24)
# ACH Direct Debit "is a delayed notification payment method ... A payment typically takes 4
# business days to arrive in your account"
# (https://docs.stripe.com/payments/ach-direct-debit/accept-a-payment): the sandbox settles (or
# fails) a bank debit 4 days after Checkout completed, by its clock.
BANK_DEBIT_SETTLES_AFTER = timedelta(days=4)
# Stripe's asynchronous refunds change "some time later" (https://docs.stripe.com/testing#refunds);
# the sandbox's, one hour later by its clock.
REFUND_CHANGES_AFTER = timedelta(hours=1)
_ALPHABET = string.ascii_letters + string.digits
# Named, not imported: the tasks module imports this one.
DELIVER_TASK = "payments.sandbox.tasks.sandbox_event_deliver"
Behaviour = SandboxPaymentMethod.Behaviour


def now() -> datetime:
    clock = SandboxClock.objects.filter(pk=1).first()
    offset = clock.offset_seconds if clock else 0
    return timezone.now().replace(microsecond=0) + timedelta(seconds=offset)


def clock_advance(*, seconds: int) -> datetime:
    clock, _ = SandboxClock.objects.get_or_create(pk=1)
    SandboxClock.objects.filter(pk=1).update(offset_seconds=clock.offset_seconds + seconds)
    return now()


def next_renewal_charged_at() -> datetime | None:
    """When the earliest live subscription's next renewal is charged: its period's end, plus the
    hour Stripe leaves a renewal as a draft before it finalizes and tries it."""
    end = SandboxSubscription.objects.filter(status__in=["active", "past_due"]).aggregate(
        first=models.Min("current_period_end")
    )["first"]
    return None if end is None else end + RENEWAL_FINALIZE_DELAY


def next_retry_at() -> datetime | None:
    """When automatic collection next tries an open invoice again."""
    return SandboxInvoice.objects.filter(status="open").aggregate(
        first=models.Min("next_payment_attempt")
    )["first"]


def new_id(prefix: str) -> str:
    return f"{prefix}_1Kb" + "".join(secrets.choice(_ALPHABET) for _ in range(21))


# Events: one action's events are delivered together, in Stripe's usual order or shuffled.

_local = threading.local()
_rng_lock = threading.Lock()
_rng: random.Random | None = None
# Room for one action's events between two actions' delivery orders.
_ACTION_SPAN = 1000


def _random() -> random.Random:
    global _rng  # noqa: PLW0603 - one generator per process, seeded once from the settings
    with _rng_lock:
        if _rng is None:
            _rng = random.Random(settings.SANDBOX_SHUFFLE_SEED)  # noqa: S311 - not security
        return _rng


def _action_base() -> int:
    """A delivery order above every earlier action's (microseconds, strictly increasing)."""
    base = max(time.time_ns() // 1000, getattr(_local, "last_base", 0) + 1)
    _local.last_base = base
    return base * _ACTION_SPAN


@contextmanager
def action() -> Iterator[None]:
    """One thing a customer, the clock or staff did. Its events are delivered after it, in the
    order Stripe typically sends them or, with SANDBOX_SHUFFLE_EVENTS, in a random order: Stripe
    guarantees none (https://docs.stripe.com/webhooks#event-ordering). Nested actions join the
    outer one."""
    if getattr(_local, "events", None) is not None:
        yield
        return
    _local.events = []
    _local.base = _action_base()
    try:
        yield
    finally:
        events: list[tuple[int, str]] = _local.events
        _local.events = None
    for _, event_id in sorted(events):
        enqueue_after_commit(DELIVER_TASK, event_id)


def emit(event_type: str, obj: dict[str, Any]) -> SandboxEvent:
    """Record an event and deliver it after commit (and again until the app answers 2xx); with
    SANDBOX_DELIVERY=chaos, when its plan says (payments.sandbox.chaos)."""
    event_id = new_id("evt")
    at = now()
    payload = {
        "id": event_id,
        "object": "event",
        "api_version": objects.API_VERSION,
        "created": objects.ts(at),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
    batch: list[tuple[int, str]] | None = getattr(_local, "events", None)
    due, copies, drops = at, 1, 0
    if settings.SANDBOX_DELIVERY == "chaos":
        # Late, in any order across actions, some twice, some lost and redelivered: ordered by
        # when each is due, at random within one microsecond.
        plan = chaos.plan()
        due, copies, drops = due + plan.delay, plan.copies, plan.drops
        order = int(due.timestamp() * 1_000_000) * chaos.TIEBREAK_SPAN + chaos.tiebreak()
    elif batch is None:
        order = _action_base()
    elif settings.SANDBOX_SHUFFLE_EVENTS:
        order = _local.base + _random().randrange(_ACTION_SPAN)
    else:
        order = _local.base + len(batch)
    event = SandboxEvent.objects.create(
        id=event_id,
        type=event_type,
        payload=payload,
        delivery_order=order,
        created=at,
        next_attempt_at=due,
        copies=copies,
        drops=drops,
    )
    if batch is None:
        enqueue_after_commit(DELIVER_TASK, event_id)
    else:
        batch.append((order, event_id))
    return event


# Money and time


def proration_amount(
    *,
    unit_amount: int,
    quantity_change: int,
    period_start: datetime,
    period_end: datetime,
    at: datetime,
) -> int:
    """unit × Δquantity × remaining seconds / period seconds, rounded half up to the cent."""
    period = int((period_end - period_start).total_seconds())
    remaining = min(max(int((period_end - at).total_seconds()), 0), period)
    numerator = unit_amount * quantity_change * remaining
    if numerator >= 0:
        return (2 * numerator + period) // (2 * period)
    return -((-2 * numerator + period) // (2 * period))


def add_months(anchor: datetime, months: int) -> datetime:
    """The anchor's day of month, `months` later; a short month clamps to its last day."""
    month_index = anchor.month - 1 + months
    year, month = anchor.year + month_index // 12, month_index % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def next_period_end(anchor: datetime, current_end: datetime) -> datetime:
    months = (current_end.year - anchor.year) * 12 + current_end.month - anchor.month
    return add_months(anchor, months + 1)


# Cards: Stripe's test cards (https://docs.stripe.com/testing)


@dataclass(frozen=True)
class TestCard:
    brand: str
    behaviour: str = Behaviour.SUCCEEDS
    error_code: str = ""
    decline_code: str = ""
    # Stripe refuses to attach a card that simulates an issuer decline: paying with it fails at
    # once. The sandbox's card page attaches 9987 and 0069 all the same, standing in for Stripe's
    # tok_visa_chargeCustomerFailLostCard token, so that a renewal can fail with those codes
    # (docs/decisions.md).
    declines_at_entry: bool = False
    card_page_attaches: bool = False
    # How a refund of a payment made with it goes (Refunds: at once, pending, failed later).
    refunds: str = SandboxPaymentMethod.Refunds.AT_ONCE


TEST_CARDS: dict[str, TestCard] = {
    "4242424242424242": TestCard("visa"),
    "4000056655665556": TestCard("visa"),
    "5555555555554444": TestCard("mastercard"),
    "378282246310005": TestCard("amex"),
    # "Attaching this card to a Customer object succeeds, but attempts to charge the customer
    # fail."
    "4000000000000341": TestCard(
        "visa", Behaviour.FAILS_ON_CHARGE, "card_declined", "generic_decline",
    ),
    "4000000000009995": TestCard(
        "visa", Behaviour.FAILS_ON_CHARGE, "card_declined", "insufficient_funds",
        declines_at_entry=True,
    ),
    "4000000000000002": TestCard(
        "visa", Behaviour.FAILS_ON_CHARGE, "card_declined", "generic_decline",
        declines_at_entry=True,
    ),
    "4000000000009987": TestCard(
        "visa", Behaviour.FAILS_ON_CHARGE, "card_declined", "lost_card",
        declines_at_entry=True, card_page_attaches=True,
    ),
    "4000000000000069": TestCard(
        "visa", Behaviour.FAILS_ON_CHARGE, "expired_card", "",
        declines_at_entry=True, card_page_attaches=True,
    ),
    # "Always authenticate: requires authentication on all transactions, regardless of how the
    # card is set up."
    "4000002760003184": TestCard("visa", Behaviour.REQUIRES_AUTHENTICATION),
    # "Asynchronous success: ... If you initiate a refund, its status begins as pending. Some
    # time later, its status transitions to succeeded and sends a refund.updated event."
    "4000000000007726": TestCard("visa", refunds=SandboxPaymentMethod.Refunds.PENDING),
    # "Asynchronous failure: ... its status begins as succeeded. Some time later, its status
    # transitions to failed and sends a refund.failed event."
    "4000000000005126": TestCard("visa", refunds=SandboxPaymentMethod.Refunds.FAIL_LATER),
}  # fmt: skip
DECLINE_MESSAGES = {
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
}
DECLINED = "Your card was declined."


def decline_message(*, code: str, decline_code: str) -> str:
    return DECLINE_MESSAGES.get(decline_code) or DECLINE_MESSAGES.get(code) or DECLINED


def _luhn_ok(number: str) -> bool:
    digits = [int(d) for d in number][::-1]
    total = sum(digits[0::2]) + sum(sum(divmod(2 * d, 10)) for d in digits[1::2])
    return total % 10 == 0


@dataclass(frozen=True)
class Card:
    number: str
    exp_month: int
    exp_year: int
    cvc: str


def card_check(card: Card, *, card_page: bool = False) -> TestCard:
    """The test card's behaviour; CardError with Stripe's message when it is refused at entry
    (a malformed card, or one that declines at once)."""
    number = "".join(ch for ch in card.number if ch.isdigit())
    if len(number) < 13 or not _luhn_ok(number):
        raise CardError("Your card number is incorrect.", code="incorrect_number")
    today = now()
    if not 1 <= card.exp_month <= 12:
        raise CardError("Your card's expiration month is invalid.", code="invalid_expiry_month")
    if (card.exp_year, card.exp_month) < (today.year, today.month):
        raise CardError("Your card's expiration date is in the past.", code="invalid_expiry_year")
    if not card.cvc.isdigit() or len(card.cvc) not in (3, 4):
        raise CardError("Your card's security code is incorrect.", code="incorrect_cvc")
    if number not in TEST_CARDS:
        raise CardError(
            "The sandbox accepts Stripe's test cards only, such as 4242 4242 4242 4242.",
            code="card_declined",
            decline_code="test_mode_live_card",
        )
    test_card = TEST_CARDS[number]
    if test_card.declines_at_entry and not (card_page and test_card.card_page_attaches):
        raise CardError(
            decline_message(code=test_card.error_code, decline_code=test_card.decline_code),
            code=test_card.error_code,
            decline_code=test_card.decline_code,
        )
    return test_card


def payment_method_attach(
    *,
    customer: SandboxCustomer,
    card: Card,
    make_default: bool = True,
    card_page: bool = True,
) -> SandboxPaymentMethod:
    """Attach a card (CardError if it is declined at entry), optionally as the default.
    `card_page`: entered on the page that saves a card (Stripe: a SetupIntent), rather than to
    pay at once (Checkout, an invoice's page)."""
    test_card = card_check(card, card_page=card_page)
    number = "".join(ch for ch in card.number if ch.isdigit())
    payment_method = SandboxPaymentMethod.objects.create(
        id=new_id("pm"),
        customer=customer,
        brand=test_card.brand,
        last4=number[-4:],
        exp_month=card.exp_month,
        exp_year=card.exp_year,
        behaviour=test_card.behaviour,
        error_code=test_card.error_code,
        decline_code=test_card.decline_code,
        refunds=test_card.refunds,
    )
    emit("payment_method.attached", objects.payment_method_json(payment_method))
    if make_default:
        payment_method_make_default(customer, payment_method)
    return payment_method


# Bank debits: Stripe's test bank accounts for ACH Direct Debit
# (https://docs.stripe.com/testing#ach-direct-debit), all at routing number 110000000.

TEST_ROUTING_NUMBER = "110000000"
TEST_BANK_NAME = "STRIPE TEST BANK"


@dataclass(frozen=True)
class TestBankAccount:
    behaviour: str
    failure_code: str = ""
    failure_message: str = ""


TEST_BANK_ACCOUNTS: dict[str, TestBankAccount] = {
    # "The payment succeeds."
    "000123456789": TestBankAccount(Behaviour.SETTLES_LATER),
    # "The payment fails due to insufficient funds."
    "000222222227": TestBankAccount(
        Behaviour.FAILS_LATER,
        "insufficient_funds",
        "The customer's account has insufficient funds to cover this payment.",
    ),
    # "The payment fails because the account is closed."
    "000111111113": TestBankAccount(
        Behaviour.FAILS_LATER, "account_closed", "The customer's bank account has been closed."
    ),
}


@dataclass(frozen=True)
class BankAccount:
    routing_number: str
    account_number: str
    holder_name: str


def bank_account_attach(*, customer: SandboxCustomer, account: BankAccount) -> SandboxPaymentMethod:
    """Attach a US bank account given at Checkout (CardError, the sandbox's word for a payment
    method refused at entry, unless it is one of Stripe's test accounts)."""
    routing = "".join(ch for ch in account.routing_number if ch.isdigit())
    number = "".join(ch for ch in account.account_number if ch.isdigit())
    test_account = TEST_BANK_ACCOUNTS.get(number)
    if routing != TEST_ROUTING_NUMBER or test_account is None:
        raise CardError(
            "The sandbox accepts Stripe's test bank accounts only: routing number 110000000 "
            "with account 000123456789 (settles) or 000222222227 (fails).",
            code="invalid_bank_account",
        )
    payment_method = SandboxPaymentMethod.objects.create(
        id=new_id("pm"),
        customer=customer,
        type=SandboxPaymentMethod.Type.US_BANK_ACCOUNT,
        brand=TEST_BANK_NAME,
        last4=number[-4:],
        exp_month=0,
        exp_year=0,
        behaviour=test_account.behaviour,
        error_code=test_account.failure_code,
        decline_code="",
    )
    emit("payment_method.attached", objects.payment_method_json(payment_method))
    return payment_method


def bank_failure_message(payment_method: SandboxPaymentMethod) -> str:
    known = {a.failure_code: a.failure_message for a in TEST_BANK_ACCOUNTS.values()}
    return known.get(payment_method.error_code) or "The bank debit failed."


def payment_method_make_default(
    customer: SandboxCustomer, payment_method: SandboxPaymentMethod
) -> None:
    if customer.default_payment_method_id != payment_method.id:
        customer.default_payment_method = payment_method
        customer.save(update_fields=["default_payment_method"])
        emit("customer.updated", objects.customer_json(customer))


def authentication_url(payment_intent: str, return_url: str = "") -> str:
    """The sandbox's stand-in for the bank's 3-D Secure page."""
    url = objects.site_url("sandbox_authenticate", payment_intent)
    return f"{url}?{urlencode({'next': return_url})}" if return_url else url


# Invoices


def _next_invoice_number() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval('sandbox_invoice_number')")
        (value,) = cursor.fetchone()
    return f"KB-{value:06d}"


def invoice_create(
    *,
    customer: SandboxCustomer,
    billing_reason: str,
    lines: list[dict[str, Any]],
    period_start: datetime,
    period_end: datetime,
    subscription: SandboxSubscription | None = None,
    description: str = "",
    metadata: dict[str, str] | None = None,
    finalize_at: datetime | None = None,
    currency: str = "usd",
    auto_advance: bool = True,
) -> SandboxInvoice:
    invoice = SandboxInvoice.objects.create(
        auto_advance=auto_advance,
        id=new_id("in"),
        customer=customer,
        subscription=subscription,
        billing_reason=billing_reason,
        description=description,
        currency=currency,
        amount_due=sum(line["amount"] for line in lines),
        lines=lines,
        metadata=metadata or {},
        period_start=period_start,
        period_end=period_end,
        created=now(),
        auto_finalize_at=finalize_at,
    )
    if subscription is not None:
        subscription.latest_invoice = invoice
        subscription.save(update_fields=["latest_invoice"])
    emit("invoice.created", objects.invoice_json(invoice))
    return invoice


# The sandbox's tax rule, Stripe Tax's for US customers: "Customers in the US require a 5-digit
# postal code" (https://docs.stripe.com/tax/invoicing). Stripe cannot finalize an invoice for a
# location it does not recognise: it sends invoice.finalization_failed, with
# last_finalization_error.code customer_tax_location_invalid, and the invoice stays a draft
# (https://docs.stripe.com/tax/customer-locations, "Invoice finalization errors";
# https://support.stripe.com/questions/manage-draft-subscription-invoices-with-invalid-tax-location-details).
TAX_LOCATION_INVALID = "customer_tax_location_invalid"
_US_ZIP = re.compile(r"\d{5}(-\d{4})?")


def tax_location_error(customer: SandboxCustomer) -> str:
    """Why the customer's address cannot be taxed, or ""."""
    address = customer.address or {}
    country = str(address.get("country") or "").upper()
    postal_code = str(address.get("postal_code") or "").strip()
    if country == "US" and not _US_ZIP.fullmatch(postal_code):
        return (
            "The customer's location isn't recognized: a customer in the US needs a 5-digit "
            f"postal code to calculate tax (got {postal_code!r})."
        )
    return ""


def invoice_finalize_checked(invoice: SandboxInvoice) -> GatewayError | None:
    """Finalize a subscription's draft as Stripe does when automatic tax is on: the customer's
    location is checked first. On failure the invoice stays a draft, with its
    last_finalization_error, and invoice.finalization_failed is sent; the error is returned."""
    if message := tax_location_error(invoice.customer):
        invoice.last_finalization_error_code = TAX_LOCATION_INVALID
        invoice.last_finalization_error = message[:300]
        invoice.auto_finalize_at = None
        invoice.save()
        emit("invoice.finalization_failed", objects.invoice_json(invoice))
        emit("invoice.updated", objects.invoice_json(invoice))
        return GatewayError(message, code=TAX_LOCATION_INVALID, http_status=400)
    invoice_finalize(invoice)
    return None


def invoice_finalize(invoice: SandboxInvoice, *, payment_intent: str = "") -> SandboxInvoice:
    """Open the invoice with its PaymentIntent: a new one, or (a post-payment invoice of
    Checkout) the payment that pays it."""
    invoice.status = "open"
    invoice.number = _next_invoice_number()
    invoice.finalized_at = now()
    invoice.auto_finalize_at = None
    # "the PaymentIntent that Stripe creates during invoice finalization"
    invoice.payment_intent = payment_intent or new_id("pi")
    invoice.payment_intent_status = "requires_payment_method"
    invoice.save()
    emit("invoice.finalized", objects.invoice_json(invoice))
    if not payment_intent:
        emit("payment_intent.created", objects.invoice_payment_intent_json(invoice))
    return invoice


def _subscription_set_status(subscription: SandboxSubscription, status: str) -> None:
    if subscription.status != status:
        subscription.status = status
        subscription.updated = now()
        subscription.save(update_fields=["status", "updated"])
        emit("customer.subscription.updated", objects.subscription_json(subscription))


def _charged_card(
    invoice: SandboxInvoice, payment_method: SandboxPaymentMethod | None
) -> SandboxPaymentMethod | None:
    """The card an attempt charges: the one given, else the subscription's own default, else the
    customer's default (https://docs.stripe.com/billing/revenue-recovery/smart-retries). A card
    that is merely attached is never charged."""
    if payment_method is not None:
        return payment_method
    subscription = invoice.subscription
    if subscription is not None and subscription.default_payment_method is not None:
        return subscription.default_payment_method
    return invoice.customer.default_payment_method


def _retry_skipped(invoice: SandboxInvoice, card: SandboxPaymentMethod | None) -> bool:
    """After a non-retryable decline, "the scheduled retries continue but the payment only
    executes if you obtain a new payment method" (Stripe, smart retries)."""
    return bool(
        invoice.attempt_count
        and {invoice.last_error_code, invoice.last_decline_code} & NON_RETRYABLE_DECLINE_CODES
        and card is not None
        and card.pk == invoice.attempt_payment_method_id
    )


def _schedule_retry(invoice: SandboxInvoice, *, card: SandboxPaymentMethod | None) -> None:
    # auto_advance off (a renewal of an unpaid subscription, finalized to be paid by hand):
    # Stripe's automatic collection leaves it alone.
    retried = (
        invoice.subscription_id
        and invoice.billing_reason != "subscription_update"
        and invoice.auto_advance
    )
    if card is None or not retried or invoice.attempt_count > len(RETRY_SCHEDULE_DAYS):
        # No card: Stripe does not retry. One-off invoices and pending updates: no schedule.
        invoice.next_payment_attempt = None
        return
    assert invoice.first_failed_at is not None
    invoice.next_payment_attempt = invoice.first_failed_at + timedelta(
        days=RETRY_SCHEDULE_DAYS[invoice.attempt_count - 1]
    )


def invoice_attempt(
    invoice: SandboxInvoice,
    *,
    automatic: bool = False,
    payment_method: SandboxPaymentMethod | None = None,
    return_url: str = "",
) -> CardError | None:
    """Charge a card for an open invoice (the customer's default unless given). None when paid;
    the CardError otherwise, with `action_url` when the payer must authenticate."""
    card = _charged_card(invoice, payment_method)
    at = now()
    if automatic and _retry_skipped(invoice, card):
        invoice.attempt_count += 1
        _schedule_retry(invoice, card=card)
        invoice.save()
        emit("invoice.updated", objects.invoice_json(invoice))
        _retries_ended(invoice, automatic=automatic)
        return CardError(
            invoice.last_payment_error or DECLINED,
            code=invoice.last_error_code or "card_declined",
            decline_code=invoice.last_decline_code,
            invoice_id=invoice.id,
        )
    error: CardError | None = None
    if invoice.amount_due > 0:
        if card is None:
            error = CardError(
                "There is no saved card to charge; add a payment method.", code=NO_PAYMENT_METHOD
            )
        elif card.behaviour == Behaviour.FAILS_ON_CHARGE:
            error = CardError(
                decline_message(code=card.error_code, decline_code=card.decline_code),
                code=card.error_code or "card_declined",
                decline_code=card.decline_code,
            )
        elif card.behaviour == Behaviour.REQUIRES_AUTHENTICATION:
            error = CardError(
                AUTHENTICATION_MESSAGE,
                code=AUTHENTICATION_REQUIRED,
                decline_code=AUTHENTICATION_REQUIRED,
                action_url=authentication_url(invoice.payment_intent, return_url),
            )
    invoice.attempt_count += 1
    if error is None:
        invoice_mark_paid(invoice, payment_method=card)
        return None
    error.invoice_id = invoice.id
    invoice.first_failed_at = invoice.first_failed_at or at
    invoice.last_payment_error = error.message
    invoice.last_error_code, invoice.last_decline_code = error.code, error.decline_code
    invoice.attempt_payment_method = card
    _schedule_retry(invoice, card=card)
    error_json = {
        "type": "card_error",
        "code": error.code,
        "decline_code": error.decline_code or None,
        "message": error.message,
    }
    if error.action_url:
        invoice.payment_intent_status = "requires_action"
        invoice.save()
        emit("payment_intent.requires_action", objects.invoice_payment_intent_json(invoice))
        emit("invoice.payment_action_required", objects.invoice_json(invoice))
    else:
        invoice.payment_intent_status = "requires_payment_method"
        invoice.save()
        if card is not None:
            emit("charge.failed", objects.charge_json(invoice, failure=error_json, card=card))
        emit(
            "payment_intent.payment_failed",
            objects.invoice_payment_intent_json(invoice, error=error_json),
        )
    # "If a payment fails or if it requires customer authentication ... invoice.payment_failed"
    # (https://docs.stripe.com/billing/subscriptions/overview).
    emit("invoice.payment_failed", objects.invoice_json(invoice))
    emit("invoice.updated", objects.invoice_json(invoice))
    _retries_ended(invoice, automatic=automatic)
    return error


def _retries_ended(invoice: SandboxInvoice, *, automatic: bool) -> None:
    """A renewal that fails is past due; after the last retry the subscription becomes what the
    Stripe dashboard's setting says (SANDBOX_END_OF_RETRIES: unpaid, cancel or past_due)."""
    subscription = invoice.subscription
    if subscription is None or invoice.billing_reason != "subscription_cycle":
        return
    final = automatic and invoice.attempt_count > len(RETRY_SCHEDULE_DAYS)
    if not final:
        # A failed payment by hand leaves an unpaid subscription unpaid: only paying its most
        # recent invoice changes that.
        if subscription.status != "unpaid":
            _subscription_set_status(subscription, "past_due")
        return
    outcome = settings.SANDBOX_END_OF_RETRIES
    if outcome == "cancel":
        subscription_end(subscription)
    elif outcome == "unpaid":
        _subscription_set_status(subscription, "unpaid")
    else:
        _subscription_set_status(subscription, "past_due")


def invoice_mark_paid(
    invoice: SandboxInvoice, *, payment_method: SandboxPaymentMethod | None = None
) -> None:
    invoice.status = "paid"
    invoice.amount_paid = invoice.amount_due
    invoice.attempt_count = max(invoice.attempt_count, 1)
    invoice.paid_at = now()
    invoice.next_payment_attempt = None
    invoice.last_payment_error = ""
    invoice.last_error_code = invoice.last_decline_code = ""
    invoice.payment_intent_status = "succeeded"
    invoice.attempt_payment_method = payment_method or invoice.attempt_payment_method
    if invoice.amount_paid > 0:
        invoice.charge = new_id("ch")
    invoice.save()
    if invoice.charge:
        emit("charge.succeeded", objects.charge_json(invoice))
    emit("payment_intent.succeeded", objects.invoice_payment_intent_json(invoice))
    emit("invoice_payment.paid", objects.invoice_payment_json(invoice))
    emit("invoice.paid", objects.invoice_json(invoice))
    emit("invoice.payment_succeeded", objects.invoice_json(invoice))
    emit("invoice.updated", objects.invoice_json(invoice))
    subscription = invoice.subscription
    if subscription is None:
        return
    if subscription.pending_invoice_id == invoice.id and subscription.pending_quantity is not None:
        subscription.quantity = subscription.pending_quantity
        subscription.pending_quantity = None
        subscription.pending_expires_at = None
        subscription.pending_invoice = None
        subscription.status = "active"
        subscription.updated = now()
        subscription.save()
        emit("customer.subscription.updated", objects.subscription_json(subscription))
        emit(
            "customer.subscription.pending_update_applied",
            objects.subscription_json(subscription),
        )
        return
    # Only paying the subscription's most recent invoice makes it active again (from
    # incomplete, past_due or unpaid): "To move the subscription to active, pay the most recent
    # invoice before its due date" (https://docs.stripe.com/billing/subscriptions/overview#unpaid,
    # and .../overview#subscription-statuses). Paying an older one leaves the status as it is.
    subscription.refresh_from_db(fields=["latest_invoice", "status"])
    latest = subscription.latest_invoice_id == invoice.id
    if latest and subscription.status in ("incomplete", "past_due", "unpaid"):
        _subscription_set_status(subscription, "active")


def invoice_void(invoice: SandboxInvoice) -> None:
    invoice.status = "void"
    invoice.voided_at = now()
    invoice.next_payment_attempt = None
    invoice.save()
    emit("invoice.voided", objects.invoice_json(invoice))
    emit("invoice.updated", objects.invoice_json(invoice))


def invoice_authenticated(invoice: SandboxInvoice, *, complete: bool) -> CardError | None:
    """The payer answered their bank for the payment waiting on them: the same attempt completes
    (no new attempt is counted), or fails with payment_intent_authentication_failure."""
    card = invoice.attempt_payment_method
    if complete:
        invoice_mark_paid(invoice, payment_method=card)
        return None
    error = CardError(
        "We are unable to authenticate your payment method. Please choose a different payment "
        "method and try again.",
        code="payment_intent_authentication_failure",
        invoice_id=invoice.id,
    )
    invoice.payment_intent_status = "requires_payment_method"
    invoice.last_payment_error = error.message
    invoice.last_error_code, invoice.last_decline_code = error.code, ""
    invoice.save()
    error_json = {"type": "card_error", "code": error.code, "message": error.message}
    emit(
        "payment_intent.payment_failed",
        objects.invoice_payment_intent_json(invoice, error=error_json),
    )
    emit("invoice.updated", objects.invoice_json(invoice))
    return error


# Refunds and disputes (https://docs.stripe.com/refunds, https://docs.stripe.com/disputes)

REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")


def _open_dispute(invoice: SandboxInvoice) -> SandboxDispute | None:
    return invoice.disputes.exclude(status__in=["won", "lost", "warning_closed"]).first()


# How a refund goes: its first status, and what it becomes REFUND_CHANGES_AFTER later ("" never
# changes). Stripe: "In live mode, refunds are asynchronous: a refund can appear to succeed and
# later fail, or can appear as pending at first and later succeed"
# (https://docs.stripe.com/testing#refunds); a pending refund can also fail.
REFUND_OUTCOMES: dict[str, tuple[str, str]] = {
    "succeeded": ("succeeded", ""),
    "pending": ("pending", "succeeded"),  # Stripe's test card 4000 0000 0000 7726
    "failed": ("succeeded", "failed"),  # Stripe's test card 4000 0000 0000 5126
    "pending-failed": ("pending", "failed"),
}
_REFUND_OUTCOME_OF_CARD = {
    SandboxPaymentMethod.Refunds.AT_ONCE: "succeeded",
    SandboxPaymentMethod.Refunds.PENDING: "pending",
    SandboxPaymentMethod.Refunds.FAIL_LATER: "failed",
}
# Why a card refund fails; Stripe's failure_reason values include lost_or_stolen_card,
# expired_or_canceled_card, declined and unknown (https://docs.stripe.com/api/refunds/object).
REFUND_FAILURE_REASON = "expired_or_canceled_card"


def refund_create(
    invoice: SandboxInvoice,
    *,
    amount: int | None = None,
    reason: str = "",
    metadata: dict[str, str] | None = None,
    outcome: str = "",
) -> SandboxRefund:
    """A refund of all (amount None) or part of what is left of the invoice's charge. Stripe
    refuses more than is left, and a charge already charged back. `outcome` (REFUND_OUTCOMES)
    decides how it goes; by default as the card that paid makes refunds go (Stripe's test
    cards for asynchronous refunds), else it succeeds at once."""
    if invoice.status != "paid" or not invoice.charge:
        raise GatewayError(
            f"Invoice {invoice.number or invoice.id} has no payment to refund.", permanent=True
        )
    if reason and reason not in REFUND_REASONS:
        raise GatewayError(
            f"Invalid reason {reason!r}: use one of {', '.join(REFUND_REASONS)}.", permanent=True
        )
    if _open_dispute(invoice) or invoice.disputes.filter(status="lost").exists():
        raise GatewayError(
            f"Charge {invoice.charge} has been charged back; it cannot be refunded.", permanent=True
        )
    remaining = invoice.amount_paid - invoice.amount_refunded
    if remaining <= 0:
        raise GatewayError(f"Charge {invoice.charge} has already been refunded.", permanent=True)
    amount = remaining if amount is None else amount
    if amount <= 0:
        raise GatewayError("A refund must be a positive amount.", permanent=True)
    if amount > remaining:
        raise GatewayError(
            f"Refund amount (${amount / 100:,.2f}) is greater than unrefunded amount on charge "
            f"(${remaining / 100:,.2f})",
            permanent=True,
        )
    card = invoice.attempt_payment_method
    outcome = outcome or _REFUND_OUTCOME_OF_CARD.get(
        SandboxPaymentMethod.Refunds(card.refunds if card else ""), "succeeded"
    )
    if outcome not in REFUND_OUTCOMES:
        raise GatewayError(f"A refund goes one of these ways: {', '.join(REFUND_OUTCOMES)}.")
    status, next_status = REFUND_OUTCOMES[outcome]
    refund = SandboxRefund.objects.create(
        id=new_id("re"),
        invoice=invoice,
        amount=amount,
        reason=reason,
        status=status,
        next_status=next_status,
        changes_at=now() + REFUND_CHANGES_AFTER if next_status else None,
        metadata=metadata or {},
        created=now(),
    )
    # A pending refund counts against what is left to refund, as with Stripe.
    invoice.amount_refunded += amount
    invoice.save(update_fields=["amount_refunded"])
    # The invoice stays paid: Stripe has no refunded invoice state.
    emit("charge.refunded", objects.charge_json(invoice))
    emit("refund.created", objects.refund_json(refund))
    return refund


def refund_change(refund: SandboxRefund) -> None:
    """The refund's later change: pending → succeeded (`refund.updated`), or → failed
    (`refund.updated` and `refund.failed`): the money was not returned, so the charge has it
    again to refund."""
    refund.status, refund.next_status, refund.changes_at = refund.next_status, "", None
    if refund.status == "failed":
        refund.failure_reason = REFUND_FAILURE_REASON
        invoice = refund.invoice
        invoice.amount_refunded = max(invoice.amount_refunded - refund.amount, 0)
        invoice.save(update_fields=["amount_refunded"])
    refund.save(update_fields=["status", "next_status", "changes_at", "failure_reason"])
    emit("refund.updated", objects.refund_json(refund))
    if refund.status == "failed":
        emit("refund.failed", objects.refund_json(refund))


def dispute_open(
    invoice: SandboxInvoice, *, amount: int | None = None, reason: str = "fraudulent"
) -> SandboxDispute:
    """A cardholder's chargeback: the disputed amount is withdrawn at once."""
    if invoice.status != "paid" or not invoice.charge:
        raise GatewayError(
            f"Invoice {invoice.number or invoice.id} has no payment to dispute.", permanent=True
        )
    if invoice.disputes.exists():
        raise GatewayError(
            f"Charge {invoice.charge} is already disputed; a charge has one dispute.",
            permanent=True,
        )
    disputable = invoice.amount_paid - invoice.amount_refunded
    amount = disputable if amount is None else amount
    if not 0 < amount <= disputable:
        raise GatewayError(
            f"A dispute of this charge is for at most ${disputable / 100:,.2f}.", permanent=True
        )
    dispute = SandboxDispute.objects.create(
        id=new_id("du"), invoice=invoice, amount=amount, reason=reason, created=now()
    )
    emit("charge.dispute.created", objects.dispute_json(dispute))
    emit("charge.dispute.funds_withdrawn", objects.dispute_json(dispute))
    emit("charge.updated", objects.charge_json(invoice))
    return dispute


def dispute_close(dispute: SandboxDispute, *, outcome: str) -> SandboxDispute:
    if outcome not in ("won", "lost"):
        raise GatewayError("A dispute closes as won or lost.", permanent=True)
    if dispute.status in ("won", "lost"):
        raise GatewayError(
            f"Dispute {dispute.id} is already closed ({dispute.status}).", permanent=True
        )
    dispute.status = outcome
    dispute.closed_at = now()
    dispute.save(update_fields=["status", "closed_at"])
    emit("charge.dispute.closed", objects.dispute_json(dispute))
    if outcome == "won":
        emit("charge.dispute.funds_reinstated", objects.dispute_json(dispute))
    return dispute


# Subscriptions


def subscription_line(
    subscription: SandboxSubscription, quantity: int, start: datetime, end: datetime
) -> dict[str, Any]:
    price = subscription.price
    return objects.invoice_line(
        line_id=new_id("il"),
        description=f"{quantity} × {price.product_name} (at ${price.unit_amount / 100:.2f}/month)",
        amount=price.unit_amount * quantity,
        quantity=quantity,
        period_start=start,
        period_end=end,
        subscription=subscription,
    )


def proration_lines(
    subscription: SandboxSubscription, quantity: int, at: datetime
) -> list[dict[str, Any]]:
    """A quantity change as Stripe writes it: a credit for the unused time on the old quantity
    and a charge for the remaining time on the new one, both pro-rated to the second
    (https://docs.stripe.com/billing/subscriptions/prorations). The charge is rounded to the
    cent on its own and the credit takes the rest, so that the two add up to exactly the
    pro-ration of the change (what the preview showed)."""
    price = subscription.price
    old = subscription.quantity

    def prorate(quantity_change: int) -> int:
        return proration_amount(
            unit_amount=price.unit_amount,
            quantity_change=quantity_change,
            period_start=subscription.current_period_start,
            period_end=subscription.current_period_end,
            at=at,
        )

    total = prorate(quantity - old)
    charge = prorate(quantity)
    after = f"after {at.day} {at:%b %Y}"
    return [
        objects.invoice_line(
            line_id=new_id("il"),
            description=f"Unused time on {old} × {price.product_name} {after}",
            amount=total - charge,
            quantity=old,
            period_start=at,
            period_end=subscription.current_period_end,
            subscription=subscription,
            proration=True,
        ),
        objects.invoice_line(
            line_id=new_id("il"),
            description=f"Remaining time on {quantity} × {price.product_name} {after}",
            amount=charge,
            quantity=quantity,
            period_start=at,
            period_end=subscription.current_period_end,
            subscription=subscription,
            proration=True,
        ),
    ]


def subscription_start(
    *, customer: SandboxCustomer, price: Any, quantity: int, metadata: dict[str, str]
) -> tuple[SandboxSubscription, SandboxInvoice]:
    """An incomplete subscription and its first, finalized invoice (not yet charged)."""
    start = now()
    subscription = SandboxSubscription.objects.create(
        id=new_id("sub"),
        item_id=new_id("si"),
        customer=customer,
        price=price,
        quantity=quantity,
        status="incomplete",
        billing_cycle_anchor=start,
        current_period_start=start,
        current_period_end=add_months(start, 1),
        metadata=metadata,
        created=start,
        updated=start,
    )
    emit("customer.subscription.created", objects.subscription_json(subscription))
    invoice = invoice_create(
        customer=customer,
        subscription=subscription,
        billing_reason="subscription_create",
        lines=[subscription_line(subscription, quantity, start, subscription.current_period_end)],
        period_start=start,
        period_end=start,
        metadata=metadata,
        currency=price.currency,
    )
    invoice_finalize(invoice)
    return subscription, invoice


def subscription_end(subscription: SandboxSubscription, *, at: datetime | None = None) -> None:
    """Canceled: at the period's end as asked, or by the end of retries ("cancel the
    subscription"), which also stops collecting its open invoices."""
    at = at or now()
    subscription.status = "canceled"
    subscription.ended_at = at
    subscription.canceled_at = subscription.canceled_at or at
    subscription.updated = now()
    subscription.save()
    SandboxInvoice.objects.filter(subscription=subscription, status="open").update(
        next_payment_attempt=None
    )
    emit("customer.subscription.deleted", objects.subscription_json(subscription))


def subscription_renew(subscription: SandboxSubscription) -> None:
    if subscription.cancel_at_period_end:
        subscription_end(subscription, at=subscription.current_period_end)
        return
    start = subscription.current_period_end
    end = next_period_end(subscription.billing_cycle_anchor, start)
    subscription.current_period_start, subscription.current_period_end = start, end
    subscription.updated = now()
    subscription.save()
    emit("customer.subscription.updated", objects.subscription_json(subscription))
    # "For unpaid subscriptions, the latest invoice remains open but payments aren't attempted.
    # Invoices continue to be generated each billing cycle and remain in draft state"
    # (https://docs.stripe.com/billing/subscriptions/overview#unpaid): auto_advance off.
    unpaid = subscription.status == "unpaid"
    invoice_create(
        customer=subscription.customer,
        subscription=subscription,
        billing_reason="subscription_cycle",
        lines=[subscription_line(subscription, subscription.quantity, start, end)],
        period_start=start,
        period_end=start,
        metadata=subscription.metadata,
        finalize_at=None if unpaid else start + RENEWAL_FINALIZE_DELAY,
        currency=subscription.price.currency,
        auto_advance=not unpaid,
    )


def customer_delete(customer: SandboxCustomer) -> None:
    """The customer deleted in the dashboard: "Permanently deletes a customer. It cannot be
    undone. Also immediately cancels any active subscriptions on the customer"; "Deleting
    customers removes all credit card details and prevents any further operations"
    (https://docs.stripe.com/api/customers/delete). Its subscriptions end now
    (customer.subscription.deleted), its cards are detached (payment_method.detached), then
    customer.deleted; from then on every call naming it fails with resource_missing."""
    if customer.deleted_at is not None:
        return
    for subscription in customer.subscriptions.exclude(
        status__in=["canceled", "incomplete_expired"]
    ):
        subscription_end(subscription)
    for payment_method in customer.payment_methods.all():
        emit(
            "payment_method.detached",
            {**objects.payment_method_json(payment_method), "customer": None},
        )
    customer.payment_methods.update(customer=None)
    customer.default_payment_method = None
    customer.deleted_at = now()
    customer.save(update_fields=["default_payment_method", "deleted_at"])
    emit("customer.deleted", objects.customer_json(customer))


def pending_update_expire(subscription: SandboxSubscription) -> None:
    """ "If you don't take any action after an update fails, the invoice is voided and the pending
    update is discarded after the expired_at time"
    (https://docs.stripe.com/billing/subscriptions/pending-updates-reference)."""
    invoice = subscription.pending_invoice
    subscription.pending_quantity = subscription.pending_expires_at = None
    subscription.pending_invoice = None
    subscription.updated = now()
    subscription.save()
    emit("customer.subscription.pending_update_expired", objects.subscription_json(subscription))
    if invoice is not None and invoice.status == "open":
        invoice_void(invoice)


def checkout_expire(session: SandboxCheckoutSession) -> None:
    """Any mode: "Occurs when a Checkout Session is expired"
    (https://docs.stripe.com/api/events/types#event_types-checkout.session.expired)."""
    session.status = "expired"
    session.save(update_fields=["status"])
    emit("checkout.session.expired", objects.checkout_session_json(session))


def checkout_expired_by_now(session: SandboxCheckoutSession) -> bool:
    """Expire a session still open past its `expires_at` (before the clock's tick got to it): it
    cannot be paid any more. True when it is expired."""
    if session.status == "open" and session.expires_at <= now():
        checkout_expire(session)
    return session.status == "expired"


def checkout_invoice_paid(
    session: SandboxCheckoutSession, payment_method: SandboxPaymentMethod, *, payment_intent: str
) -> SandboxInvoice:
    """The post-payment invoice of a payment-mode Checkout: "Stripe emits an invoice.paid event
    as soon as the payment tied to the Checkout Session succeeds"
    (https://docs.stripe.com/payments/checkout/post-payment-invoices), paid by that payment."""
    at = now()
    line = objects.invoice_line(
        line_id=new_id("il"),
        description=session.description,
        amount=session.amount,
        quantity=1,
        period_start=at,
        period_end=at,
        currency=session.currency,
    )
    invoice = invoice_create(
        customer=session.customer,
        billing_reason="manual",
        lines=[line],
        period_start=at,
        period_end=at,
        description=session.description,
        metadata=session.metadata,
        currency=session.currency,
    )
    invoice_finalize(invoice, payment_intent=payment_intent)
    invoice_mark_paid(invoice, payment_method=payment_method)
    session.invoice, session.payment_intent = invoice, invoice.payment_intent
    return invoice


def checkout_settle(session: SandboxCheckoutSession) -> None:
    """The bank's answer to a Checkout paid by bank debit (completed `unpaid`): the payment
    succeeds, its invoice is paid and `checkout.session.async_payment_succeeded` follows; or it
    fails, `checkout.session.async_payment_failed` (https://docs.stripe.com/checkout/fulfillment
    #delayed-notification). The session stays `complete` either way."""
    payment_method = session.payment_method
    assert payment_method is not None
    session.settles_at = None
    if payment_method.behaviour == Behaviour.SETTLES_LATER:
        checkout_invoice_paid(session, payment_method, payment_intent=session.payment_intent)
        session.payment_status = "paid"
        session.save()
        emit("checkout.session.async_payment_succeeded", objects.checkout_session_json(session))
        return
    session.save(update_fields=["settles_at"])
    error = {
        "type": "invalid_request_error",
        "code": f"payment_method_{payment_method.error_code}"
        if payment_method.error_code
        else "payment_method_failed",
        "message": bank_failure_message(payment_method),
    }
    emit(
        "payment_intent.payment_failed",
        objects.payment_intent_json(
            id=session.payment_intent,
            amount=session.amount,
            amount_received=0,
            currency=session.currency,
            customer_id=session.customer_id,
            status="requires_payment_method",
            created=session.created,
            payment_method_id=payment_method.id,
            payment_method_types=["us_bank_account"],
            metadata=session.metadata,
            error=error,
        ),
    )
    emit("checkout.session.async_payment_failed", objects.checkout_session_json(session))


def _due_work(at: datetime) -> bool:
    """Do one piece of due work, in time order; False when nothing is due."""
    subscription = (
        SandboxSubscription.objects.select_for_update(skip_locked=True)
        .filter(status__in=["active", "past_due", "unpaid"], current_period_end__lte=at)
        .order_by("current_period_end")
        .first()
    )
    if subscription:
        subscription_renew(subscription)
        return True
    draft = (
        SandboxInvoice.objects.select_for_update(skip_locked=True)
        .filter(status="draft", auto_finalize_at__lte=at)
        .order_by("auto_finalize_at")
        .first()
    )
    if draft:
        if invoice_finalize_checked(draft) is None:
            invoice_attempt(draft, automatic=True)
        return True
    retry = (
        SandboxInvoice.objects.select_for_update(skip_locked=True)
        .filter(status="open", next_payment_attempt__lte=at)
        .order_by("next_payment_attempt")
        .first()
    )
    if retry:
        invoice_attempt(retry, automatic=True)
        return True
    pending = (
        SandboxSubscription.objects.select_for_update(skip_locked=True)
        .filter(pending_expires_at__lte=at)
        .first()
    )
    if pending:
        pending_update_expire(pending)
        return True
    session = (
        SandboxCheckoutSession.objects.select_for_update(skip_locked=True)
        .filter(status="open", expires_at__lte=at)
        .first()
    )
    if session:
        checkout_expire(session)
        return True
    return _settlement_due(at)


def _settlement_due(at: datetime) -> bool:
    """A bank debit's answer or a refund's change that is due, if any (one piece of work)."""
    settling = (
        SandboxCheckoutSession.objects.select_for_update(skip_locked=True)
        .filter(settles_at__lte=at)
        .order_by("settles_at")
        .first()
    )
    if settling:
        checkout_settle(settling)
        return True
    refund = (
        SandboxRefund.objects.select_for_update(skip_locked=True)
        .filter(changes_at__lte=at)
        .order_by("changes_at")
        .first()
    )
    if refund:
        refund_change(refund)
        return True
    return False


def tick(*, limit: int = 10_000) -> int:
    """Run everything due by the sandbox clock: renewals, finalizations, retries, expiries, bank
    debits settling and refunds changing."""
    done = 0
    at = now()
    while done < limit:
        with transaction.atomic(), action():
            if not _due_work(at):
                break
        done += 1
    return done
