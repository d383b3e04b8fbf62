"""SandboxGateway: the BillingGateway of the no-keys mode, answering like Stripe from its state."""

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from django.core import signing
from django.core.exceptions import ObjectDoesNotExist
from django.db import IntegrityError, transaction
from django.db.models import Model

from payments.gateway import (
    RESOURCE_MISSING,
    BillingGateway,
    CardError,
    Charge,
    CheckoutSession,
    Customer,
    CustomerDetails,
    Dispute,
    GatewayError,
    Invoice,
    Payment,
    PaymentAttempt,
    PaymentMethod,
    Price,
    ProrationPreview,
    QuantityChange,
    Refund,
    Subscription,
    parse_checkout_session,
    parse_customer,
    parse_dispute,
    parse_invoice,
    parse_invoice_line,
    parse_payment,
    parse_payment_method,
    parse_price,
    parse_refund,
    parse_subscription,
)
from payments.sandbox import engine, objects
from payments.sandbox.models import (
    SandboxCheckoutSession,
    SandboxCustomer,
    SandboxDispute,
    SandboxIdempotencyKey,
    SandboxInvoice,
    SandboxPaymentMethod,
    SandboxPrice,
    SandboxRefund,
    SandboxSubscription,
)
from payments.tax_ids import tax_id_valid

PAGE_SALT = "sandbox-customer-page"
_M = TypeVar("_M", bound=Model)


def customer_page_token(customer_id: str, return_url: str) -> str:
    return signing.dumps({"customer": customer_id, "return_url": return_url}, salt=PAGE_SALT)


def customer_page_claims(token: str) -> dict[str, str]:
    """The customer and return address a page link was made for; BadSignature if forged."""
    claims: dict[str, str] = signing.loads(token, salt=PAGE_SALT, max_age=timedelta(days=1))
    return claims


def _remembered(key: str) -> str | None:
    row = SandboxIdempotencyKey.objects.filter(key=key).first()
    return row.object_id if row else None


def _remember(key: str, object_id: str) -> None:
    SandboxIdempotencyKey.objects.create(key=key, object_id=object_id)


def _missing(kind: str, object_id: str) -> GatewayError:
    """Stripe's answer for an object it does not have: 404 resource_missing."""
    return GatewayError(f"No such {kind}: '{object_id}'", code=RESOURCE_MISSING, http_status=404)


def _get(model: type[_M], object_id: str) -> _M:
    try:
        return model._default_manager.get(pk=object_id)
    except ObjectDoesNotExist:
        raise _missing(model.__name__.removeprefix("Sandbox").lower(), object_id) from None


def _customer(customer_id: str) -> SandboxCustomer:
    """The customer, if it exists and was not deleted: "Deleting customers ... prevents any
    further operations to be performed" (https://docs.stripe.com/api/customers/delete); the
    sandbox answers every call naming a deleted customer with resource_missing."""
    customer = _get(SandboxCustomer, customer_id)
    if customer.deleted_at is not None:
        raise _missing("customer", customer_id)
    return customer


def _address(details: CustomerDetails) -> dict[str, str]:
    return details.address.as_stripe() if details.address else {}


def _tax_ids(details: CustomerDetails) -> list[dict[str, str]]:
    """Stripe checks a tax ID's format for its type when it is created and refuses a malformed
    one with an invalid_request_error (https://docs.stripe.com/billing/customer/tax-ids)."""
    if not details.tax_id:
        return []
    if not tax_id_valid(details.tax_id_type, details.tax_id):
        raise GatewayError(
            f"Invalid value for {details.tax_id_type}: {details.tax_id!r} (invalid_request_error)",
            permanent=True,
        )
    return [{"id": f"txi_{details.tax_id}", "type": details.tax_id_type, "value": details.tax_id}]


def _failure(invoice: SandboxInvoice, *, return_url: str = "") -> CardError:
    """The failure of the invoice's last attempt, as it was reported the first time."""
    waiting = invoice.payment_intent_status == "requires_action"
    return CardError(
        invoice.last_payment_error or engine.DECLINED,
        code=invoice.last_error_code or "card_declined",
        decline_code=invoice.last_decline_code,
        invoice_id=invoice.id,
        action_url=engine.authentication_url(invoice.payment_intent, return_url) if waiting else "",
    )


class SandboxGateway(BillingGateway):
    name = "sandbox"

    def _once(self, key: str, make: Callable[[], str]) -> str:
        """Run `make` (which returns the id of what it made) once per idempotency key."""
        if (known := _remembered(key)) is not None:
            return known
        try:
            with engine.action(), transaction.atomic():
                object_id = make()
                _remember(key, object_id)
        except IntegrityError:
            # The same request raced this one and won (its work is kept, this one's rolled
            # back): answer with the first result, as Stripe does.
            if (known := _remembered(key)) is not None:
                return known
            raise
        return object_id

    # Customers and payment methods

    def now(self) -> datetime:
        return engine.now()

    def customer_create(
        self, *, details: CustomerDetails, metadata: dict[str, str], idempotency_key: str
    ) -> str:
        def make() -> str:
            customer = SandboxCustomer.objects.create(
                id=engine.new_id("cus"),
                name=details.name,
                email=details.email,
                address=_address(details),
                tax_ids=_tax_ids(details),
                metadata=metadata,
                created=engine.now(),
            )
            return customer.id

        return self._once(idempotency_key, make)

    def customer_update(self, *, customer_id: str, details: CustomerDetails) -> None:
        with engine.action(), transaction.atomic():
            customer = _customer(customer_id)
            customer.name, customer.email = details.name, details.email
            customer.address, customer.tax_ids = _address(details), _tax_ids(details)
            customer.save()
            engine.emit("customer.updated", objects.customer_json(customer))

    def customer_retrieve(self, *, customer_id: str) -> Customer:
        customer = SandboxCustomer.objects.filter(pk=customer_id).first()
        # Gone, or deleted in the dashboard: Stripe answers a deleted customer with a stub that
        # says so.
        if customer is None or customer.deleted_at is not None:
            return Customer(id=customer_id, deleted=True)
        return parse_customer(objects.customer_json(customer))

    def payment_method_default(self, *, customer_id: str) -> PaymentMethod | None:
        customer = _customer(customer_id)
        if customer.default_payment_method is None:
            return None
        return parse_payment_method(objects.payment_method_json(customer.default_payment_method))

    def payment_method_update_url(self, *, customer_id: str, return_url: str) -> str:
        _customer(customer_id)
        token = customer_page_token(customer_id, return_url)
        return objects.site_url("sandbox_payment_method", token)

    def billing_portal_url(self, *, customer_id: str, return_url: str) -> str:
        _customer(customer_id)
        token = customer_page_token(customer_id, return_url)
        return objects.site_url("sandbox_portal", token)

    def price_ensure(
        self, *, lookup_key: str, product_name: str, unit_amount: int, currency: str = "usd"
    ) -> Price:
        price, _ = SandboxPrice.objects.get_or_create(
            lookup_key=lookup_key,
            defaults={
                "id": engine.new_id("price"),
                "product_name": product_name,
                "unit_amount": unit_amount,
                "currency": currency,
            },
        )
        return parse_price(objects.price_json(price))

    # One-off purchases

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
        failures: list[CardError] = []

        def make() -> str:
            customer = _customer(customer_id)
            at = engine.now()
            line = objects.invoice_line(
                line_id=engine.new_id("il"),
                description=description,
                amount=amount,
                quantity=1,
                period_start=at,
                period_end=at,
                currency=currency,
            )
            engine.emit(
                "invoiceitem.created", objects.invoiceitem_json(customer.id, line, metadata, at)
            )
            invoice = engine.invoice_create(
                customer=customer,
                billing_reason="manual",
                lines=[line],
                period_start=at,
                period_end=at,
                description=description,
                metadata=metadata,
                currency=currency,
            )
            engine.invoice_finalize(invoice)
            if error := engine.invoice_attempt(invoice, return_url=return_url):
                failures.append(error)
            return invoice.id

        invoice_id = self._once(idempotency_key, make)
        invoice = _get(SandboxInvoice, invoice_id)
        parsed = parse_invoice(objects.invoice_json(invoice))
        if parsed.paid:
            return Charge(invoice=parsed)
        failure = failures[0] if failures else _failure(invoice, return_url=return_url)
        return Charge(invoice=parsed, failure=failure)

    def _checkout(
        self,
        idempotency_key: str,
        **fields: object,
    ) -> CheckoutSession:
        def make() -> str:
            session = SandboxCheckoutSession.objects.create(
                id=engine.new_id("cs_test").replace("cs_test_1Kb", "cs_test_a1Kb"),
                created=engine.now(),
                expires_at=engine.now() + engine.CHECKOUT_LIFETIME,
                **fields,
            )
            return session.id

        return self.checkout_session_retrieve(session_id=self._once(idempotency_key, make))

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
        return self._checkout(
            idempotency_key,
            customer=_customer(customer_id),
            mode="payment",
            amount=amount,
            currency=currency,
            description=description,
            metadata=metadata,
            success_url=success_url,
            cancel_url=cancel_url,
        )

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
    ) -> CheckoutSession:
        price = _get(SandboxPrice, price_id)
        return self._checkout(
            idempotency_key,
            customer=_customer(customer_id),
            mode="subscription",
            price=price,
            quantity=quantity,
            amount=price.unit_amount * quantity,
            currency=price.currency,
            description=f"{quantity} × {price.product_name}",
            metadata=metadata,
            success_url=success_url,
            cancel_url=cancel_url,
        )

    def checkout_session_retrieve(self, *, session_id: str) -> CheckoutSession:
        return parse_checkout_session(
            objects.checkout_session_json(_get(SandboxCheckoutSession, session_id))
        )

    def checkout_session_save_card(self, *, session_id: str) -> None:
        """As with Stripe: the card the completed Checkout collected becomes the customer's
        default, and the subscription's own default (set by Checkout) is cleared so that the
        customer's default, replaced later on the card page, is what renewals charge."""
        with engine.action(), transaction.atomic():
            session = (
                SandboxCheckoutSession.objects.select_for_update(of=("self",))
                .select_related("customer", "payment_method", "subscription")
                .filter(pk=session_id)
                .first()
            )
            if session is None:
                raise _missing("checkout.session", session_id)
            if session.status != "complete" or session.payment_method is None:
                return
            if session.payment_method.type != SandboxPaymentMethod.Type.CARD:
                # A bank account paid this Checkout; the saved card stays the card it was.
                return
            engine.payment_method_make_default(session.customer, session.payment_method)
            subscription = session.subscription
            if subscription is not None and subscription.default_payment_method_id:
                subscription.default_payment_method = None
                subscription.updated = engine.now()
                subscription.save(update_fields=["default_payment_method", "updated"])
                engine.emit(
                    "customer.subscription.updated", objects.subscription_json(subscription)
                )

    # Subscriptions

    def subscription_create(
        self,
        *,
        customer_id: str,
        price_id: str,
        quantity: int,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> Subscription:
        if (known := _remembered(idempotency_key)) is not None:
            return self.subscription_retrieve(subscription_id=known)
        # error_if_incomplete: a failed first payment leaves nothing behind, as with Stripe; so
        # does one that needs authentication ("if a payment method requires 3DS authentication
        # ... the subscription creation fails with 402").
        try:
            with engine.action(), transaction.atomic():
                customer = _customer(customer_id)
                subscription, invoice = engine.subscription_start(
                    customer=customer,
                    price=_get(SandboxPrice, price_id),
                    quantity=quantity,
                    metadata=metadata,
                )
                if error := engine.invoice_attempt(invoice):
                    raise error
                _remember(idempotency_key, subscription.id)
        except CardError as error:
            error.invoice_id = error.action_url = ""
            raise
        return self.subscription_retrieve(subscription_id=subscription.id)

    def subscription_retrieve(self, *, subscription_id: str) -> Subscription:
        return parse_subscription(
            objects.subscription_json(_get(SandboxSubscription, subscription_id))
        )

    def subscription_list(self, *, customer_id: str) -> list[Subscription]:
        subscriptions = (
            SandboxSubscription.objects.filter(customer_id=customer_id)
            .select_related("price")
            .order_by("-created", "-id")
        )
        return [
            parse_subscription(objects.subscription_json(subscription))
            for subscription in subscriptions
        ]

    def subscription_preview_quantity(
        self, *, subscription_id: str, quantity: int, proration_date: datetime
    ) -> ProrationPreview:
        subscription = _get(SandboxSubscription, subscription_id)
        lines = []
        if quantity > subscription.quantity:
            lines = engine.proration_lines(subscription, quantity, proration_date)
        return ProrationPreview(
            amount_due=sum(line["amount"] for line in lines),
            proration_date=proration_date,
            lines=tuple(parse_invoice_line(line) for line in lines),
            next_period_amount=subscription.price.unit_amount * quantity,
        )

    def subscription_change_quantity(
        self,
        *,
        subscription_id: str,
        quantity: int,
        proration_date: datetime | None,
        idempotency_key: str,
    ) -> QuantityChange:
        failures: list[CardError] = []

        def make() -> str:
            subscription = SandboxSubscription.objects.select_for_update().get(pk=subscription_id)
            if subscription.status not in ("active", "past_due", "trialing"):
                raise GatewayError(
                    f"The subscription is {subscription.status}; it cannot change.", permanent=True
                )
            if quantity <= subscription.quantity:
                subscription.quantity = quantity
                subscription.updated = engine.now()
                subscription.save()
                engine.emit(
                    "customer.subscription.updated", objects.subscription_json(subscription)
                )
                return subscription.id
            at = proration_date or engine.now()
            invoice = engine.invoice_create(
                customer=subscription.customer,
                subscription=subscription,
                billing_reason="subscription_update",
                lines=engine.proration_lines(subscription, quantity, at),
                period_start=at,
                period_end=at,
                metadata=subscription.metadata,
            )
            engine.invoice_finalize(invoice)
            # pending_if_incomplete: the new quantity waits for the payment.
            subscription.pending_quantity = quantity
            subscription.pending_invoice = invoice
            subscription.save()
            if error := engine.invoice_attempt(invoice):
                subscription.refresh_from_db()
                subscription.pending_expires_at = engine.now() + engine.PENDING_UPDATE_LIFETIME
                subscription.save(update_fields=["pending_expires_at"])
                engine.emit(
                    "customer.subscription.updated", objects.subscription_json(subscription)
                )
                failures.append(error)
            return invoice.id

        result_id = self._once(idempotency_key, make)
        if result_id.startswith("sub_"):
            return QuantityChange(
                subscription=self.subscription_retrieve(subscription_id=result_id), invoice=None
            )
        invoice = self.invoice_retrieve(invoice_id=result_id)
        if not invoice.paid:
            raise failures[0] if failures else _failure(_get(SandboxInvoice, result_id))
        return QuantityChange(
            subscription=self.subscription_retrieve(subscription_id=subscription_id),
            invoice=invoice,
        )

    def _set_cancel_at_period_end(self, subscription_id: str, value: bool) -> Subscription:
        with engine.action(), transaction.atomic():
            subscription = SandboxSubscription.objects.select_for_update().get(pk=subscription_id)
            if subscription.status == "canceled":
                raise GatewayError("The subscription has ended; start a new one.", permanent=True)
            if subscription.cancel_at_period_end != value:
                subscription.cancel_at_period_end = value
                subscription.canceled_at = engine.now() if value else None
                subscription.updated = engine.now()
                subscription.save()
                engine.emit(
                    "customer.subscription.updated", objects.subscription_json(subscription)
                )
        return self.subscription_retrieve(subscription_id=subscription_id)

    def subscription_cancel_at_period_end(self, *, subscription_id: str) -> Subscription:
        return self._set_cancel_at_period_end(subscription_id, True)

    def subscription_resume(self, *, subscription_id: str) -> Subscription:
        return self._set_cancel_at_period_end(subscription_id, False)

    # Invoices

    def invoice_list(self, *, customer_id: str, limit: int | None = 100) -> list[Invoice]:
        _customer(customer_id)
        invoices = (
            SandboxInvoice.objects.filter(customer_id=customer_id)
            .select_related("customer", "subscription")
            .order_by("-created", "-id")[:limit]
        )
        # As Stripe answers a list read with expand=data.payments: each with its payments.
        return [
            parse_invoice(
                {
                    **objects.invoice_json(invoice),
                    "payments": {
                        "object": "list",
                        "data": [objects.invoice_payment_json(invoice)]
                        if invoice.payment_intent
                        else [],
                    },
                }
            )
            for invoice in invoices
        ]

    def invoice_retrieve(self, *, invoice_id: str) -> Invoice:
        return parse_invoice(objects.invoice_json(_get(SandboxInvoice, invoice_id)))

    def invoice_pay(
        self,
        *,
        invoice_id: str,
        idempotency_key: str,
        off_session: bool = True,
        return_url: str = "",
    ) -> Invoice:
        failures: list[CardError] = []

        def make() -> str:
            invoice = SandboxInvoice.objects.select_for_update().get(pk=invoice_id)
            if invoice.status == "draft":
                invoice.auto_advance = False
                if error := engine.invoice_finalize_checked(invoice):
                    raise error
            if invoice.status != "open":
                raise GatewayError(
                    f"Invoice {invoice.number or invoice.id} is {invoice.status}.", permanent=True
                )
            if error := engine.invoice_attempt(invoice, return_url=return_url):
                failures.append(error)
            return invoice.id

        self._once(idempotency_key, make)
        if failures:
            raise failures[0]
        invoice = self.invoice_retrieve(invoice_id=invoice_id)
        if not invoice.paid:  # a repeat of a request that failed: the same failure again
            raise _failure(_get(SandboxInvoice, invoice_id), return_url=return_url)
        return invoice

    def invoice_finalize(self, *, invoice_id: str) -> Invoice:
        with engine.action(), transaction.atomic():
            invoice = SandboxInvoice.objects.select_for_update().filter(pk=invoice_id).first()
            if invoice is None:
                raise _missing("invoice", invoice_id)
            error = None
            if invoice.status == "draft":
                # As the Stripe gateway asks: the caller pays it at once itself.
                invoice.auto_advance = False
                error = engine.invoice_finalize_checked(invoice)
        if error is not None:
            raise error  # after the commit: the failure and its event are kept, as Stripe's
        return self.invoice_retrieve(invoice_id=invoice_id)

    def invoice_void(self, *, invoice_id: str) -> Invoice:
        with engine.action(), transaction.atomic():
            invoice = SandboxInvoice.objects.select_for_update().filter(pk=invoice_id).first()
            if invoice is None:
                raise _missing("invoice", invoice_id)
            if invoice.status in ("draft", "open", "uncollectible"):
                engine.invoice_void(invoice)
            elif invoice.status != "void":
                raise GatewayError(
                    f"You can only void an open invoice; {invoice.number} is {invoice.status}.",
                    permanent=True,
                )
        return self.invoice_retrieve(invoice_id=invoice_id)

    def invoice_last_payment(self, *, invoice_id: str) -> PaymentAttempt | None:
        invoice = _get(SandboxInvoice, invoice_id)
        if not invoice.attempt_count or not invoice.payment_intent:
            return None
        return PaymentAttempt(
            payment_intent=invoice.payment_intent,
            status=invoice.payment_intent_status,
            code=invoice.last_error_code,
            decline_code=invoice.last_decline_code,
            message=invoice.last_payment_error,
        )

    # Refunds and disputes

    def payment_invoice_id(self, *, payment_intent: str) -> str:
        if not payment_intent:
            return ""
        found = (
            SandboxInvoice.objects.filter(payment_intent=payment_intent)
            .values_list("pk", flat=True)
            .first()
        )
        return found or ""

    def refund_create(
        self,
        *,
        invoice_id: str,
        amount: int,
        reason: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> Refund:
        def make() -> str:
            invoice = SandboxInvoice.objects.select_for_update().filter(pk=invoice_id).first()
            if invoice is None:
                raise _missing("invoice", invoice_id)
            return engine.refund_create(invoice, amount=amount, reason=reason, metadata=metadata).id

        refund_id = self._once(idempotency_key, make)
        return parse_refund(objects.refund_json(_get(SandboxRefund, refund_id)))

    def refund_list(self, *, payment_intent: str) -> list[Refund]:
        refunds = SandboxRefund.objects.filter(invoice__payment_intent=payment_intent).order_by(
            "-created", "-id"
        )
        return [parse_refund(objects.refund_json(refund)) for refund in refunds]

    def dispute_retrieve(self, *, dispute_id: str) -> Dispute:
        return parse_dispute(objects.dispute_json(_get(SandboxDispute, dispute_id)))

    def payment_list(self, *, customer_id: str) -> list[Payment]:
        charged = (
            SandboxInvoice.objects.filter(customer_id=customer_id)
            .exclude(charge="")
            .select_related("attempt_payment_method")
            .prefetch_related("disputes")  # charge_json asks whether it is disputed
            .order_by("-paid_at", "-id")
        )
        return [parse_payment(objects.charge_json(invoice)) for invoice in charged]

    def dispute_list(self, *, payment_intent: str) -> list[Dispute]:
        disputes = (
            SandboxDispute.objects.filter(invoice__payment_intent=payment_intent)
            .select_related("invoice")
            .order_by("-created", "-id")
        )
        return [parse_dispute(objects.dispute_json(dispute)) for dispute in disputes]
