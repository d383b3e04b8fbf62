"""What a customer does on the sandbox's hosted pages: pay a checkout, replace the card, pay an
invoice, answer their bank's 3-D Secure question. Each returns an Outcome: done, the card error to
show, or the page where the payer must authenticate first."""

from dataclasses import dataclass

from django.db import transaction

from payments.gateway import AUTHENTICATION_MESSAGE, CardError
from payments.sandbox import engine, objects
from payments.sandbox.engine import Card
from payments.sandbox.models import (
    SandboxCheckoutSession,
    SandboxCustomer,
    SandboxInvoice,
    SandboxPaymentMethod,
)

Behaviour = SandboxPaymentMethod.Behaviour


@dataclass(frozen=True)
class Outcome:
    error: CardError | None = None
    # Where the payer goes next: the bank's authentication page, or back to the merchant.
    redirect: str = ""

    @property
    def done(self) -> bool:
        return self.error is None and not self.redirect


def _payment_failed(
    customer: SandboxCustomer, amount: int, currency: str, error: CardError
) -> None:
    engine.emit(
        "payment_intent.payment_failed",
        objects.payment_intent_json(
            id=engine.new_id("pi"),
            amount=amount,
            amount_received=0,
            currency=currency,
            customer_id=customer.id,
            status="requires_payment_method",
            created=engine.now(),
            error={
                "type": "card_error",
                "code": error.code,
                "decline_code": error.decline_code or None,
                "message": error.message,
            },
        ),
    )


def _session_intent_json(session: SandboxCheckoutSession, status: str) -> dict[str, object]:
    return objects.payment_intent_json(
        id=session.payment_intent,
        amount=session.amount,
        amount_received=0,
        currency=session.currency,
        customer_id=session.customer_id,
        status=status,
        created=session.created,
        payment_method_id=session.payment_method_id,
        metadata=session.metadata,
    )


def checkout_complete(*, session_id: str, card: Card) -> Outcome:
    """Pay a Checkout session with a card. Checkout attaches the card to the customer but does
    not make it the default: the product does that itself (checkout_session_save_card). A card
    that needs 3-D Secure sends the payer to authenticate first."""
    with engine.action(), transaction.atomic():
        session = SandboxCheckoutSession.objects.select_for_update().get(pk=session_id)
        if closed := _closed(session):
            return closed
        customer = session.customer
        try:
            payment_method = engine.payment_method_attach(
                customer=customer, card=card, make_default=False, card_page=False
            )
        except CardError as declined:
            _payment_failed(customer, session.amount, session.currency, declined)
            return Outcome(declined)
        session.payment_method = payment_method
        if payment_method.behaviour == Behaviour.REQUIRES_AUTHENTICATION:
            session.payment_intent = session.payment_intent or engine.new_id("pi")
            session.save(update_fields=["payment_method", "payment_intent"])
            engine.emit(
                "payment_intent.requires_action", _session_intent_json(session, "requires_action")
            )
            return Outcome(
                redirect=engine.authentication_url(
                    session.payment_intent, objects.site_url("sandbox_checkout", session.id)
                )
            )
        session.save(update_fields=["payment_method"])
        return _checkout_pay(session, payment_method)


def _closed(session: SandboxCheckoutSession) -> Outcome | None:
    """Why the session takes no payment: paid already, or expired (also one past its 24 hours
    that the clock's tick has not expired yet: it is expired now)."""
    if engine.checkout_expired_by_now(session):
        return Outcome(CardError("This checkout has expired.", code="checkout_expired"))
    if session.status != "open":
        return Outcome(CardError("This checkout is no longer open.", code="checkout_closed"))
    return None


def checkout_expire_if_due(*, session_id: str) -> bool:
    """A session past its 24 hours expires now, with its event, rather than at the next tick."""
    with engine.action(), transaction.atomic():
        session = SandboxCheckoutSession.objects.select_for_update().get(pk=session_id)
        return engine.checkout_expired_by_now(session)


def checkout_pay_by_bank(*, session_id: str, account: engine.BankAccount) -> Outcome:
    """Pay a payment-mode Checkout by bank debit (ACH Direct Debit): the session completes at
    once with `payment_status=unpaid` while the PaymentIntent is `processing`; the bank's answer
    comes BANK_DEBIT_SETTLES_AFTER later by the sandbox clock (`engine.checkout_settle`)
    (https://docs.stripe.com/payments/ach-direct-debit/accept-a-payment)."""
    with engine.action(), transaction.atomic():
        session = SandboxCheckoutSession.objects.select_for_update().get(pk=session_id)
        if closed := _closed(session):
            return closed
        if session.mode != "payment" or session.currency != "usd":
            return Outcome(
                CardError(
                    "Bank debits are offered for one-time payments in US dollars; pay by card.",
                    code="payment_method_not_available",
                )
            )
        try:
            payment_method = engine.bank_account_attach(customer=session.customer, account=account)
        except CardError as refused:
            return Outcome(refused)
        session.payment_method = payment_method
        session.payment_intent = engine.new_id("pi")
        session.status, session.payment_status = "complete", "unpaid"
        session.settles_at = engine.now() + engine.BANK_DEBIT_SETTLES_AFTER
        session.save()
        intent = objects.payment_intent_json(
            id=session.payment_intent,
            amount=session.amount,
            amount_received=0,
            currency=session.currency,
            customer_id=session.customer_id,
            status="processing",
            created=engine.now(),
            payment_method_id=payment_method.id,
            payment_method_types=["us_bank_account"],
            metadata=session.metadata,
        )
        engine.emit("payment_intent.created", intent)
        engine.emit("payment_intent.processing", intent)
        engine.emit("checkout.session.completed", objects.checkout_session_json(session))
    return Outcome(redirect=session.success_url.replace("{CHECKOUT_SESSION_ID}", session.id))


def _checkout_pay(session: SandboxCheckoutSession, payment_method: SandboxPaymentMethod) -> Outcome:
    if session.mode == "payment":
        failure = _checkout_payment(session, payment_method)
    else:
        failure = _checkout_subscription(session, payment_method)
    if failure:
        return Outcome(failure)
    session.status, session.payment_status = "complete", "paid"
    session.save()
    engine.emit("checkout.session.completed", objects.checkout_session_json(session))
    return Outcome(redirect=session.success_url.replace("{CHECKOUT_SESSION_ID}", session.id))


def _checkout_payment(
    session: SandboxCheckoutSession, payment_method: SandboxPaymentMethod
) -> CardError | None:
    if payment_method.behaviour == Behaviour.FAILS_ON_CHARGE:
        error = CardError(
            engine.decline_message(
                code=payment_method.error_code, decline_code=payment_method.decline_code
            ),
            code=payment_method.error_code or "card_declined",
            decline_code=payment_method.decline_code,
        )
        _payment_failed(session.customer, session.amount, session.currency, error)
        return error
    # The payment Checkout collected (and the payer authenticated) pays its invoice.
    engine.checkout_invoice_paid(session, payment_method, payment_intent=session.payment_intent)
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
    subscription = session.subscription
    assert subscription is not None
    # "the collected payment method is set as the default_payment_method on the Subscription"
    subscription.default_payment_method = payment_method
    subscription.save(update_fields=["default_payment_method"])
    invoice = SandboxInvoice.objects.get(pk=session.invoice_id)
    if payment_method.behaviour == Behaviour.REQUIRES_AUTHENTICATION:
        engine.invoice_mark_paid(invoice, payment_method=payment_method)  # authenticated
        return None
    return engine.invoice_attempt(invoice, payment_method=payment_method)


def payment_method_replace(*, customer_id: str, card: Card) -> Outcome:
    """The new card becomes the default; unpaid invoices wait for their next attempt or pay now."""
    with engine.action(), transaction.atomic():
        customer = SandboxCustomer.objects.select_for_update().get(pk=customer_id)
        try:
            engine.payment_method_attach(customer=customer, card=card, make_default=True)
        except CardError as error:
            return Outcome(error)
    return Outcome()


def invoice_pay_with_card(*, invoice_id: str, card: Card) -> Outcome:
    with engine.action(), transaction.atomic():
        invoice = SandboxInvoice.objects.select_for_update().get(pk=invoice_id)
        if invoice.status != "open":
            return Outcome(CardError(f"This invoice is {invoice.status}.", code="invoice_not_open"))
        try:
            engine.payment_method_attach(
                customer=invoice.customer, card=card, make_default=True, card_page=False
            )
        except CardError as declined:
            return Outcome(declined)
        invoice.customer.refresh_from_db()
        failure = engine.invoice_attempt(
            invoice, return_url=objects.site_url("sandbox_invoice", invoice.id)
        )
        if failure is not None and failure.action_url:
            return Outcome(redirect=failure.action_url)
        return Outcome(failure)


def awaiting_authentication(
    payment_intent: str,
) -> SandboxInvoice | SandboxCheckoutSession | None:
    """The invoice or the Checkout whose payment waits for the payer's bank, if any."""
    invoice = (
        SandboxInvoice.objects.select_related("customer")
        .filter(
            payment_intent=payment_intent, status="open", payment_intent_status="requires_action"
        )
        .first()
    )
    if invoice is not None:
        return invoice
    return (
        SandboxCheckoutSession.objects.select_related("customer")
        .filter(
            payment_intent=payment_intent,
            status="open",
            payment_method__behaviour=Behaviour.REQUIRES_AUTHENTICATION,
        )
        .first()
    )


def payment_authenticate(*, payment_intent: str, complete: bool) -> Outcome:
    """The payer's answer on the bank's page: complete pays what waited on it, fail leaves it
    unpaid (Checkout stays open; the invoice stays open for another card or a retry)."""
    with engine.action(), transaction.atomic():
        target = awaiting_authentication(payment_intent)
        if isinstance(target, SandboxInvoice):
            invoice = SandboxInvoice.objects.select_for_update().get(pk=target.pk)
            if invoice.status != "open" or invoice.payment_intent_status != "requires_action":
                return Outcome(CardError("Nothing is waiting for this confirmation any more."))
            return Outcome(engine.invoice_authenticated(invoice, complete=complete))
        if isinstance(target, SandboxCheckoutSession):
            session = SandboxCheckoutSession.objects.select_for_update().get(pk=target.pk)
            payment_method = session.payment_method
            assert payment_method is not None
            if closed := _closed(session):
                return closed
            if complete:
                return _checkout_pay(session, payment_method)
            error = CardError(
                "We are unable to authenticate your payment method. Please choose a different "
                "payment method and try again.",
                code="payment_intent_authentication_failure",
            )
            engine.emit(
                "payment_intent.payment_failed",
                {
                    **_session_intent_json(session, "requires_payment_method"),
                    "last_payment_error": {
                        "type": "card_error",
                        "code": error.code,
                        "message": error.message,
                    },
                },
            )
            session.payment_method = None
            session.save(update_fields=["payment_method"])
            return Outcome(error)
    return Outcome(CardError(AUTHENTICATION_MESSAGE + " This link is no longer waiting for it."))
