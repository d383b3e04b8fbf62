"""The sandbox's behaviour: Stripe's state machines, pro-ration, renewals and retries, each change
announced as a Stripe-shaped event delivered to the app's webhook endpoint.

Everything reads time from `now()`, the real clock plus the offset `sandbox_advance` adds.
"""

import calendar
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from payments.gateway import CardError
from payments.queue import enqueue_after_commit
from payments.sandbox import objects
from payments.sandbox.models import (
    SandboxCheckoutSession,
    SandboxClock,
    SandboxCustomer,
    SandboxEvent,
    SandboxInvoice,
    SandboxPaymentMethod,
    SandboxSubscription,
)

# Days after the first failure on which Stripe's automatic collection tries an invoice again.
RETRY_SCHEDULE_DAYS = (1, 3, 5)
PENDING_UPDATE_LIFETIME = timedelta(hours=23)
RENEWAL_FINALIZE_DELAY = timedelta(hours=1)
CHECKOUT_LIFETIME = timedelta(hours=24)
_ALPHABET = string.ascii_letters + string.digits


def now() -> datetime:
    clock = SandboxClock.objects.filter(pk=1).first()
    offset = clock.offset_seconds if clock else 0
    return timezone.now().replace(microsecond=0) + timedelta(seconds=offset)


def clock_advance(*, seconds: int) -> datetime:
    clock, _ = SandboxClock.objects.get_or_create(pk=1)
    SandboxClock.objects.filter(pk=1).update(offset_seconds=clock.offset_seconds + seconds)
    return now()


def new_id(prefix: str) -> str:
    return f"{prefix}_1Kb" + "".join(secrets.choice(_ALPHABET) for _ in range(21))


def emit(event_type: str, obj: dict[str, Any]) -> SandboxEvent:
    """Record an event and deliver it after commit (and again until the app answers 2xx)."""
    from payments.sandbox import tasks

    event_id = new_id("evt")
    payload = {
        "id": event_id,
        "object": "event",
        "api_version": objects.API_VERSION,
        "created": objects.ts(now()),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
    event = SandboxEvent.objects.create(id=event_id, type=event_type, payload=payload)
    enqueue_after_commit(tasks.sandbox_event_deliver, event_id)
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


# Cards

TEST_CARDS: dict[str, tuple[str, str | None]] = {
    # number: (brand, None if usable else the decline code at entry)
    "4242424242424242": ("visa", None),
    "4000056655665556": ("visa", None),
    "5555555555554444": ("mastercard", None),
    "378282246310005": ("amex", None),
    "4000000000000341": ("visa", None),
    "4000000000009995": ("visa", "insufficient_funds"),
    "4000000000000002": ("visa", "generic_decline"),
}
FAILS_ON_CHARGE = {"4000000000000341"}
DECLINE_MESSAGES = {
    "insufficient_funds": "Your card has insufficient funds.",
    "generic_decline": "Your card was declined.",
}


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


def card_check(card: Card) -> tuple[str, str]:
    """(brand, behaviour) for a usable test card; CardError with Stripe's message otherwise."""
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
    brand, decline = TEST_CARDS[number]
    if decline:
        raise CardError(DECLINE_MESSAGES[decline], code="card_declined", decline_code=decline)
    behaviour = (
        SandboxPaymentMethod.Behaviour.FAILS_ON_CHARGE
        if number in FAILS_ON_CHARGE
        else SandboxPaymentMethod.Behaviour.SUCCEEDS
    )
    return brand, behaviour


def payment_method_attach(
    *, customer: SandboxCustomer, card: Card, make_default: bool = True
) -> SandboxPaymentMethod:
    """Attach a card (CardError if it is declined at entry), optionally as the default."""
    brand, behaviour = card_check(card)
    number = "".join(ch for ch in card.number if ch.isdigit())
    payment_method = SandboxPaymentMethod.objects.create(
        id=new_id("pm"),
        customer=customer,
        brand=brand,
        last4=number[-4:],
        exp_month=card.exp_month,
        exp_year=card.exp_year,
        behaviour=behaviour,
    )
    emit("payment_method.attached", objects.payment_method_json(payment_method))
    if make_default:
        payment_method_make_default(customer, payment_method)
    return payment_method


def payment_method_make_default(
    customer: SandboxCustomer, payment_method: SandboxPaymentMethod
) -> None:
    if customer.default_payment_method_id != payment_method.id:
        customer.default_payment_method = payment_method
        customer.save(update_fields=["default_payment_method"])
        emit("customer.updated", objects.customer_json(customer))


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
) -> SandboxInvoice:
    invoice = SandboxInvoice.objects.create(
        id=new_id("in"),
        customer=customer,
        subscription=subscription,
        billing_reason=billing_reason,
        description=description,
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


def invoice_finalize(invoice: SandboxInvoice) -> SandboxInvoice:
    invoice.status = "open"
    invoice.number = _next_invoice_number()
    invoice.finalized_at = now()
    invoice.auto_finalize_at = None
    invoice.payment_intent = new_id("pi")
    invoice.save()
    emit("invoice.finalized", objects.invoice_json(invoice))
    return invoice


def _subscription_set_status(subscription: SandboxSubscription, status: str) -> None:
    if subscription.status != status:
        subscription.status = status
        subscription.updated = now()
        subscription.save(update_fields=["status", "updated"])
        emit("customer.subscription.updated", objects.subscription_json(subscription))


def invoice_attempt(
    invoice: SandboxInvoice,
    *,
    automatic: bool = False,
    payment_method: SandboxPaymentMethod | None = None,
) -> CardError | None:
    """Charge a card (the customer's default unless given) for an open invoice. None when paid."""
    payment_method = payment_method or invoice.customer.default_payment_method
    error: CardError | None = None
    if invoice.amount_due > 0:
        if payment_method is None:
            error = CardError(
                "There is no saved card to charge; add a payment method.",
                code="payment_method_missing",
            )
        elif payment_method.behaviour == SandboxPaymentMethod.Behaviour.FAILS_ON_CHARGE:
            error = CardError(
                "Your card was declined.", code="card_declined", decline_code="generic_decline"
            )
    invoice.attempt_count += 1
    if error is None:
        invoice_mark_paid(invoice)
        return None
    error.invoice_id = invoice.id
    at = now()
    invoice.first_failed_at = invoice.first_failed_at or at
    invoice.last_payment_error = error.message
    retries_left = invoice.subscription_id and invoice.billing_reason != "subscription_update"
    if retries_left and invoice.attempt_count <= len(RETRY_SCHEDULE_DAYS):
        invoice.next_payment_attempt = invoice.first_failed_at + timedelta(
            days=RETRY_SCHEDULE_DAYS[invoice.attempt_count - 1]
        )
    else:
        invoice.next_payment_attempt = None
    invoice.save()
    error_json = {
        "type": "card_error",
        "code": error.code,
        "decline_code": error.decline_code or None,
        "message": error.message,
    }
    emit(
        "payment_intent.payment_failed",
        objects.payment_intent_json(invoice, status="requires_payment_method", error=error_json),
    )
    emit("invoice.payment_failed", objects.invoice_json(invoice))
    subscription = invoice.subscription
    if subscription is not None and invoice.billing_reason in ("subscription_cycle",):
        exhausted = invoice.next_payment_attempt is None and automatic
        _subscription_set_status(subscription, "unpaid" if exhausted else "past_due")
    return error


def invoice_mark_paid(invoice: SandboxInvoice) -> None:
    invoice.status = "paid"
    invoice.amount_paid = invoice.amount_due
    invoice.paid_at = now()
    invoice.next_payment_attempt = None
    invoice.last_payment_error = ""
    invoice.save()
    emit("payment_intent.succeeded", objects.payment_intent_json(invoice, status="succeeded"))
    emit("invoice.paid", objects.invoice_json(invoice))
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
        return
    # Paying the open invoice of a subscription makes it active again (from incomplete,
    # past_due or unpaid), unless a newer invoice is still unpaid.
    unpaid = SandboxInvoice.objects.filter(
        subscription=subscription,
        status="open",
        billing_reason__in=["subscription_create", "subscription_cycle"],
    ).exists()
    if not unpaid and subscription.status in ("incomplete", "past_due", "unpaid"):
        _subscription_set_status(subscription, "active")


def invoice_void(invoice: SandboxInvoice) -> None:
    invoice.status = "void"
    invoice.voided_at = now()
    invoice.next_payment_attempt = None
    invoice.save()
    emit("invoice.voided", objects.invoice_json(invoice))


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


def proration_line(
    subscription: SandboxSubscription, quantity: int, at: datetime
) -> dict[str, Any]:
    price = subscription.price
    change = quantity - subscription.quantity
    amount = proration_amount(
        unit_amount=price.unit_amount,
        quantity_change=change,
        period_start=subscription.current_period_start,
        period_end=subscription.current_period_end,
        at=at,
    )
    return objects.invoice_line(
        line_id=new_id("il"),
        description=f"Remaining time on {change} × {price.product_name} after {at:%d %b %Y}",
        amount=amount,
        quantity=change,
        period_start=at,
        period_end=subscription.current_period_end,
        subscription=subscription,
        proration=True,
    )


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
    )
    invoice_finalize(invoice)
    return subscription, invoice


def subscription_renew(subscription: SandboxSubscription) -> None:
    if subscription.cancel_at_period_end:
        subscription.status = "canceled"
        subscription.ended_at = subscription.current_period_end
        subscription.canceled_at = subscription.canceled_at or subscription.current_period_end
        subscription.save()
        emit("customer.subscription.deleted", objects.subscription_json(subscription))
        return
    start = subscription.current_period_end
    end = next_period_end(subscription.billing_cycle_anchor, start)
    subscription.current_period_start, subscription.current_period_end = start, end
    subscription.updated = now()
    subscription.save()
    emit("customer.subscription.updated", objects.subscription_json(subscription))
    invoice_create(
        customer=subscription.customer,
        subscription=subscription,
        billing_reason="subscription_cycle",
        lines=[subscription_line(subscription, subscription.quantity, start, end)],
        period_start=start,
        period_end=start,
        metadata=subscription.metadata,
        finalize_at=start + RENEWAL_FINALIZE_DELAY,
    )


def checkout_expire(session: SandboxCheckoutSession) -> None:
    session.status = "expired"
    session.save(update_fields=["status"])
    emit("checkout.session.expired", objects.checkout_session_json(session))


def _due_work(at: datetime) -> bool:
    """Do one piece of due work, in time order; False when nothing is due."""
    subscription = (
        SandboxSubscription.objects.select_for_update(skip_locked=True)
        .filter(status__in=["active", "past_due"], current_period_end__lte=at)
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
        invoice_attempt(invoice_finalize(draft), automatic=True)
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
        if pending.pending_invoice and pending.pending_invoice.status == "open":
            invoice_void(pending.pending_invoice)
        pending.pending_quantity = pending.pending_expires_at = pending.pending_invoice = None
        pending.save()
        emit("customer.subscription.updated", objects.subscription_json(pending))
        return True
    session = (
        SandboxCheckoutSession.objects.select_for_update(skip_locked=True)
        .filter(status="open", expires_at__lte=at)
        .first()
    )
    if session:
        checkout_expire(session)
        return True
    return False


def tick(*, limit: int = 10_000) -> int:
    """Run everything due by the sandbox clock: renewals, finalizations, retries, expiries."""
    done = 0
    at = now()
    while done < limit:
        with transaction.atomic():
            if not _due_work(at):
                break
        done += 1
    return done
