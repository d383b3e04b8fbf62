"""What a customer does on the sandbox's hosted pages: pay a checkout, replace the card, pay an
invoice. Each returns the card error to show (None on success) and keeps the events of a failure."""

from django.db import transaction

from payments.gateway import CardError
from payments.sandbox import engine, objects
from payments.sandbox.engine import Card
from payments.sandbox.models import (
    SandboxCheckoutSession,
    SandboxCustomer,
    SandboxInvoice,
    SandboxPaymentMethod,
)


def _payment_failed(customer: SandboxCustomer, amount: int, error: CardError) -> None:
    engine.emit(
        "payment_intent.payment_failed",
        {
            "id": engine.new_id("pi"),
            "object": "payment_intent",
            "amount": amount,
            "currency": "usd",
            "customer": customer.id,
            "last_payment_error": {
                "type": "card_error",
                "code": error.code,
                "decline_code": error.decline_code or None,
                "message": error.message,
            },
            "livemode": False,
            "metadata": {},
            "status": "requires_payment_method",
        },
    )


def checkout_complete(*, session_id: str, card: Card) -> CardError | None:
    with transaction.atomic():
        session = SandboxCheckoutSession.objects.select_for_update().get(pk=session_id)
        if session.status != "open":
            return CardError("This checkout is no longer open.", code="checkout_closed")
        customer = session.customer
        try:
            payment_method = engine.payment_method_attach(
                customer=customer, card=card, make_default=False
            )
        except CardError as declined:
            _payment_failed(customer, session.amount, declined)
            return declined
        if session.mode == "payment":
            failure = _checkout_payment(session, payment_method)
        else:
            failure = _checkout_subscription(session, payment_method)
        if failure:
            return failure
        engine.payment_method_make_default(customer, payment_method)
        session.status, session.payment_status = "complete", "paid"
        session.save()
        engine.emit("checkout.session.completed", objects.checkout_session_json(session))
    return None


def _checkout_payment(
    session: SandboxCheckoutSession, payment_method: SandboxPaymentMethod
) -> CardError | None:
    if payment_method.behaviour == SandboxPaymentMethod.Behaviour.FAILS_ON_CHARGE:
        error = CardError("Your card was declined.", decline_code="generic_decline")
        _payment_failed(session.customer, session.amount, error)
        return error
    at = engine.now()
    line = objects.invoice_line(
        line_id=engine.new_id("il"),
        description=session.description,
        amount=session.amount,
        quantity=1,
        period_start=at,
        period_end=at,
    )
    invoice = engine.invoice_create(
        customer=session.customer,
        billing_reason="manual",
        lines=[line],
        period_start=at,
        period_end=at,
        description=session.description,
        metadata=session.metadata,
    )
    engine.invoice_finalize(invoice)
    engine.invoice_attempt(invoice, payment_method=payment_method)
    session.invoice, session.payment_intent = invoice, invoice.payment_intent
    return None


def _checkout_subscription(
    session: SandboxCheckoutSession, payment_method: SandboxPaymentMethod
) -> CardError | None:
    if session.subscription is None:
        assert session.price is not None
        subscription, invoice = engine.subscription_start(
            customer=session.customer,
            price=session.price,
            quantity=session.quantity,
            metadata=session.metadata,
        )
        session.subscription, session.invoice = subscription, invoice
        session.save(update_fields=["subscription", "invoice"])
    assert session.invoice is not None
    invoice = SandboxInvoice.objects.get(pk=session.invoice_id)
    return engine.invoice_attempt(invoice, payment_method=payment_method)


def payment_method_replace(*, customer_id: str, card: Card) -> CardError | None:
    """The new card becomes the default; unpaid invoices wait for their next attempt or pay now."""
    with transaction.atomic():
        customer = SandboxCustomer.objects.select_for_update().get(pk=customer_id)
        try:
            engine.payment_method_attach(customer=customer, card=card, make_default=True)
        except CardError as error:
            return error
    return None


def invoice_pay_with_card(*, invoice_id: str, card: Card) -> CardError | None:
    with transaction.atomic():
        invoice = SandboxInvoice.objects.select_for_update().get(pk=invoice_id)
        if invoice.status != "open":
            return CardError(f"This invoice is {invoice.status}.", code="invoice_not_open")
        try:
            engine.payment_method_attach(customer=invoice.customer, card=card, make_default=True)
        except CardError as error:
            return error
        invoice.customer.refresh_from_db()
        return engine.invoice_attempt(invoice)
