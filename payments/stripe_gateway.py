"""StripeGateway: the BillingGateway over Stripe's official library.

Every call goes through one `stripe.StripeClient` pinned to the API version the library was built
for, so the shapes the parsers read never drift with the account's default version. Library
objects are turned into plain dicts before parsing, the same shape webhooks deliver.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import stripe
from django.utils import timezone
from stripe.params import (
    CustomerCreateParams,
    CustomerCreateParamsAddress,
    CustomerUpdateParams,
    SubscriptionUpdateParams,
    SubscriptionUpdateParamsItem,
)

from payments.gateway import (
    AUTHENTICATION_MESSAGE,
    AUTHENTICATION_REQUIRED,
    PLAN_INTERVAL,
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
    needs_authentication,
    parse_checkout_session,
    parse_customer,
    parse_dispute,
    parse_invoice,
    parse_invoice_line,
    parse_payment,
    parse_payment_attempt,
    parse_payment_method,
    parse_price,
    parse_refund,
    parse_subscription,
)
from payments.ratelimit import gateway_reads

logger = logging.getLogger(__name__)

STRIPE_API_VERSION: str = stripe.api_version

DECLINED_MESSAGE = "Your card was declined."

# Safe to retry: every money-moving request carries an idempotency key, and the library generates
# one for the other POSTs (a retry reuses it). The library's default is no retry at all for a
# StripeClient, and an 80-second read timeout: far too long inside a web request.
_MAX_NETWORK_RETRIES = 2
_CONNECT_TIMEOUT = 5
_READ_TIMEOUT = 20
_PAGE_LIMIT = 100


def _plain(obj: stripe.StripeObject) -> dict[str, Any]:
    return obj.to_dict(recursive=True, for_json=True)


def _timestamp(moment: datetime) -> int:
    return int(moment.timestamp())


def _address(details: CustomerDetails) -> CustomerCreateParamsAddress | None:
    if details.address is None:
        return None
    address = details.address
    return {
        "line1": address.line1,
        "line2": address.line2,
        "city": address.city,
        "postal_code": address.postal_code,
        "state": address.state,
        "country": address.country,
    }


def _normal_tax_id(value: str) -> str:
    """Stripe may store a tax ID without the spaces or dots it was typed with."""
    return "".join(char for char in value.upper() if char.isalnum())


def _card_error(error: stripe.CardError, *, invoice_id: str = "") -> CardError:
    body = error.json_body if isinstance(error.json_body, dict) else {}
    data = body.get("error") or {}
    code = error.code or data.get("code") or "card_declined"
    decline_code = data.get("decline_code") or ""
    intent = data.get("payment_intent") or {}
    status = intent.get("status") if isinstance(intent, dict) else ""
    if needs_authentication(code=code, decline_code=decline_code, status=status or ""):
        # Stripe reports it as invoice_payment_intent_requires_action, as card_declined with
        # decline_code authentication_required, or as the PaymentIntent's requires_action: one
        # code for the product (the action URL is added by the caller, which knows the invoice).
        return CardError(
            AUTHENTICATION_MESSAGE,
            code=AUTHENTICATION_REQUIRED,
            decline_code=decline_code,
            invoice_id=invoice_id,
        )
    return CardError(
        error.user_message or data.get("message") or DECLINED_MESSAGE,
        code=code,
        decline_code=decline_code,
        invoice_id=invoice_id,
    )


def _describe(error: stripe.StripeError) -> str:
    message = f"Stripe {type(error).__name__}: {error.user_message or 'no message'}"
    if error.http_status:
        message += f" (HTTP {error.http_status}{', ' + error.code if error.code else ''})"
    if error.request_id:
        message += f" [{error.request_id}]"
    return message


@contextmanager
def _stripe_errors(*, invoice_id: str = "") -> Iterator[None]:
    try:
        yield
    except stripe.CardError as error:
        raise _card_error(error, invoice_id=invoice_id) from error
    except stripe.StripeError as error:
        raise GatewayError(
            _describe(error),
            code=error.code or "",
            # GatewayError tells what waiting cannot heal from the two: 400, "the request was
            # unacceptable", and 404 / resource_missing; 409, 429 and 5xx are worth waiting for
            # (https://docs.stripe.com/api/errors).
            http_status=error.http_status or 0,
        ) from error


def _first_item(subscription: dict[str, Any]) -> dict[str, Any]:
    items = (subscription.get("items") or {}).get("data") or []
    if not items:
        raise GatewayError(f"Stripe subscription {subscription.get('id')} has no items")
    return dict(items[0])


class StripeGateway(BillingGateway):
    name = "stripe"

    def __init__(self, *, api_key: str, http_client: stripe.HTTPClient | None = None) -> None:
        self._client = stripe.StripeClient(
            api_key,
            stripe_version=STRIPE_API_VERSION,
            http_client=http_client
            or stripe.RequestsClient(timeout=(_CONNECT_TIMEOUT, _READ_TIMEOUT)),
            max_network_retries=_MAX_NETWORK_RETRIES,
        )
        self._v1 = self._client.v1

    # Customers and payment methods

    def now(self) -> datetime:
        # Stripe's timestamps are whole seconds.
        return timezone.now().replace(microsecond=0)

    def customer_create(
        self, *, details: CustomerDetails, metadata: dict[str, str], idempotency_key: str
    ) -> str:
        params: CustomerCreateParams = {
            "name": details.name,
            "email": details.email,
            "metadata": metadata,
        }
        address = _address(details)
        if address is not None:
            params["address"] = address
        if details.tax_id:
            params["tax_id_data"] = [{"type": details.tax_id_type, "value": details.tax_id}]
        with _stripe_errors():
            customer = self._v1.customers.create(params, {"idempotency_key": idempotency_key})
        return customer.id

    def customer_update(self, *, customer_id: str, details: CustomerDetails) -> None:
        # The details are the whole truth about the customer: no address clears the old one.
        params: CustomerUpdateParams = {
            "name": details.name,
            "email": details.email,
            "address": _address(details) or "",
        }
        wanted = _normal_tax_id(details.tax_id)
        with _stripe_errors():
            self._v1.customers.update(customer_id, params)
            existing = self._v1.customers.tax_ids.list(customer_id, {"limit": _PAGE_LIMIT})
            kept = next(
                (
                    tax_id.id
                    for tax_id in existing.data
                    if wanted
                    and _normal_tax_id(tax_id.value) == wanted
                    and tax_id.type == details.tax_id_type
                ),
                None,
            )
            # Create before deleting, so that a value Stripe rejects leaves the old one in place.
            if wanted and kept is None:
                self._v1.customers.tax_ids.create(
                    customer_id, {"type": details.tax_id_type, "value": details.tax_id}
                )
            for tax_id in existing.data:
                if tax_id.id != kept:
                    self._v1.customers.tax_ids.delete(customer_id, tax_id.id)

    def customer_retrieve(self, *, customer_id: str) -> Customer:
        # A deleted customer is still answered, as a stub with `deleted: true`
        # (https://docs.stripe.com/api/customers/retrieve); an id Stripe never had (or that
        # belongs to another account or mode) is a 404 resource_missing: gone all the same.
        gateway_reads().take()
        try:
            with _stripe_errors():
                customer = self._v1.customers.retrieve(customer_id)
        except GatewayError as error:
            cause = error.__cause__
            if isinstance(cause, stripe.InvalidRequestError) and cause.code == "resource_missing":
                return Customer(id=customer_id, deleted=True)
            raise
        return parse_customer(_plain(customer))

    def payment_method_default(self, *, customer_id: str) -> PaymentMethod | None:
        # Only the customer's default: Stripe charges invoices with it, never with a card that is
        # merely attached (https://docs.stripe.com/billing/revenue-recovery/smart-retries).
        with _stripe_errors():
            customer = _plain(
                self._v1.customers.retrieve(
                    customer_id, {"expand": ["invoice_settings.default_payment_method"]}
                )
            )
        default = (customer.get("invoice_settings") or {}).get("default_payment_method")
        if isinstance(default, dict):
            return parse_payment_method(default)
        return None

    def payment_method_update_url(self, *, customer_id: str, return_url: str) -> str:
        with _stripe_errors():
            session = self._v1.billing_portal.sessions.create(
                {
                    "customer": customer_id,
                    "return_url": return_url,
                    "flow_data": {"type": "payment_method_update"},
                }
            )
        return session.url

    def billing_portal_url(self, *, customer_id: str, return_url: str) -> str:
        with _stripe_errors():
            session = self._v1.billing_portal.sessions.create(
                {"customer": customer_id, "return_url": return_url}
            )
        return session.url

    # Prices

    def price_ensure(
        self, *, lookup_key: str, product_name: str, unit_amount: int, currency: str = "usd"
    ) -> Price:
        key = f"price_ensure:{lookup_key}:{unit_amount}:{currency}"
        with _stripe_errors():
            found = self._v1.prices.list({"lookup_keys": [lookup_key], "active": True, "limit": 1})
            if found.data:
                return parse_price(_plain(found.data[0]))
            product = self._v1.products.create(
                {"name": product_name}, {"idempotency_key": f"{key}:product"}
            )
            price = self._v1.prices.create(
                {
                    "product": product.id,
                    "unit_amount": unit_amount,
                    "currency": currency,
                    "recurring": {"interval": PLAN_INTERVAL},
                    "lookup_key": lookup_key,
                },
                {"idempotency_key": f"{key}:price"},
            )
        return parse_price(_plain(price))

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
        # One key per request, derived from the caller's: a retry of the whole operation replays
        # each step (same invoice, same item, same payment attempt) instead of repeating it.
        # `return_url` has no use here: Stripe's hosted invoice page, where the payer
        # authenticates, has no way back.
        with _stripe_errors():
            draft = self._v1.invoices.create(
                {
                    "customer": customer_id,
                    "collection_method": "charge_automatically",
                    "auto_advance": False,
                    "pending_invoice_items_behavior": "exclude",
                    "currency": currency,
                    "description": description,
                    "metadata": metadata,
                },
                {"idempotency_key": f"{idempotency_key}:invoice"},
            )
            invoice_id = draft.id
            self._v1.invoice_items.create(
                {
                    "customer": customer_id,
                    "invoice": invoice_id,
                    "amount": amount,
                    "currency": currency,
                    "description": description,
                    "metadata": metadata,
                },
                {"idempotency_key": f"{idempotency_key}:item"},
            )
            self._v1.invoices.finalize_invoice(
                invoice_id,
                {"auto_advance": False},
                {"idempotency_key": f"{idempotency_key}:finalize"},
            )
        try:
            paid = self._pay(invoice_id, off_session=True, key=f"{idempotency_key}:pay")
        except CardError as failure:
            with _stripe_errors():
                unpaid = parse_invoice(_plain(self._v1.invoices.retrieve(invoice_id)))
            if failure.needs_authentication:
                failure.action_url = unpaid.hosted_invoice_url
            return Charge(invoice=unpaid, failure=failure)
        return Charge(invoice=paid)

    def _pay(self, invoice_id: str, *, off_session: bool, key: str) -> Invoice:
        """invoices.pay, with the three ways Stripe reports that the bank wants the payer to
        authenticate (an error code, a decline code, or an answer whose PaymentIntent
        requires_action) all turned into CardError(code="authentication_required")."""
        with _stripe_errors(invoice_id=invoice_id):
            paid = parse_invoice(
                _plain(
                    self._v1.invoices.pay(
                        invoice_id, {"off_session": off_session}, {"idempotency_key": key}
                    )
                )
            )
        if not paid.paid:
            raise self._payment_failure(invoice_id=invoice_id)
        return paid

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
        with _stripe_errors():
            session = self._v1.checkout.sessions.create(
                {
                    "mode": "payment",
                    "customer": customer_id,
                    "line_items": [
                        {
                            "price_data": {
                                "currency": currency,
                                "unit_amount": amount,
                                "product_data": {"name": description},
                            },
                            "quantity": 1,
                        }
                    ],
                    "invoice_creation": {
                        "enabled": True,
                        "invoice_data": {"description": description, "metadata": metadata},
                    },
                    "payment_intent_data": {
                        "setup_future_usage": "off_session",
                        "metadata": metadata,
                    },
                    "metadata": metadata,
                    "success_url": success_url,
                    "cancel_url": cancel_url,
                },
                {"idempotency_key": idempotency_key},
            )
        return parse_checkout_session(_plain(session))

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
        with _stripe_errors():
            session = self._v1.checkout.sessions.create(
                {
                    "mode": "subscription",
                    "customer": customer_id,
                    "line_items": [{"price": price_id, "quantity": quantity}],
                    "subscription_data": {"metadata": metadata},
                    "metadata": metadata,
                    "success_url": success_url,
                    "cancel_url": cancel_url,
                },
                {"idempotency_key": idempotency_key},
            )
        return parse_checkout_session(_plain(session))

    def checkout_session_retrieve(self, *, session_id: str) -> CheckoutSession:
        with _stripe_errors():
            session = self._v1.checkout.sessions.retrieve(session_id)
        return parse_checkout_session(_plain(session))

    def checkout_session_save_card(self, *, session_id: str) -> None:
        with _stripe_errors():
            session = _plain(
                self._v1.checkout.sessions.retrieve(
                    session_id, {"expand": ["payment_intent.payment_method", "subscription"]}
                )
            )
            intent = session.get("payment_intent") or {}
            subscription = session.get("subscription") or {}
            method = (intent.get("payment_method") if isinstance(intent, dict) else None) or (
                subscription.get("default_payment_method")
                if isinstance(subscription, dict)
                else None
            )
            if isinstance(method, dict):
                if method.get("type", "card") != "card":
                    # A bank debit paid it (ACH, SEPA): off-session purchases and top-ups are
                    # charged to a card, which stays the one saved.
                    return
                method = method.get("id")
            if not method or not session.get("customer"):
                return
            self._v1.customers.update(
                str(session["customer"]),
                {"invoice_settings": {"default_payment_method": str(method)}},
            )
            # Checkout also set the card on the subscription itself, which takes precedence over
            # the customer's default: cleared, so that a card replaced later (Customer Portal)
            # is the one renewals charge.
            if isinstance(subscription, dict) and subscription.get("default_payment_method"):
                self._v1.subscriptions.update(
                    str(subscription["id"]), {"default_payment_method": ""}
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
        with _stripe_errors():
            subscription = self._v1.subscriptions.create(
                {
                    "customer": customer_id,
                    "items": [{"price": price_id, "quantity": quantity}],
                    "payment_behavior": "error_if_incomplete",
                    "metadata": metadata,
                    "expand": ["latest_invoice"],
                },
                {"idempotency_key": idempotency_key},
            )
        return parse_subscription(_plain(subscription))

    def subscription_retrieve(self, *, subscription_id: str) -> Subscription:
        return parse_subscription(self._subscription_data(subscription_id))

    def subscription_list(self, *, customer_id: str) -> list[Subscription]:
        # Without `status=all` Stripe leaves out canceled subscriptions
        # (https://docs.stripe.com/api/subscriptions/list).
        subscriptions = self._paged(
            self._v1.subscriptions.list,
            {"customer": customer_id, "status": "all"},
        )
        return [parse_subscription(subscription) for subscription in subscriptions]

    def subscription_preview_quantity(
        self, *, subscription_id: str, quantity: int, proration_date: datetime
    ) -> ProrationPreview:
        subscription = self._subscription_data(subscription_id)
        item = _first_item(subscription)
        unit_amount = int((item.get("price") or {}).get("unit_amount") or 0)
        next_period_amount = unit_amount * quantity
        if quantity <= int(item.get("quantity") or 0):
            # Decreases apply without proration (see subscription_change_quantity): nothing now.
            return ProrationPreview(
                amount_due=0,
                proration_date=proration_date,
                lines=(),
                next_period_amount=next_period_amount,
            )
        with _stripe_errors():
            preview = self._v1.invoices.create_preview(
                {
                    "customer": str(subscription.get("customer") or ""),
                    "subscription": subscription_id,
                    "subscription_details": {
                        "items": [{"id": item["id"], "quantity": quantity}],
                        "proration_behavior": "always_invoice",
                        "proration_date": _timestamp(proration_date),
                    },
                }
            )
        data = _plain(preview)
        lines = (parse_invoice_line(line) for line in (data.get("lines") or {}).get("data") or [])
        return ProrationPreview(
            amount_due=int(data.get("amount_due") or 0),
            proration_date=proration_date,
            lines=tuple(line for line in lines if line.proration),
            next_period_amount=next_period_amount,
        )

    def subscription_change_quantity(
        self,
        *,
        subscription_id: str,
        quantity: int,
        proration_date: datetime | None,
        idempotency_key: str,
    ) -> QuantityChange:
        current = self._subscription_data(subscription_id)
        item = _first_item(current)
        items: list[SubscriptionUpdateParamsItem] = [{"id": item["id"], "quantity": quantity}]
        options: stripe.RequestOptions = {"idempotency_key": idempotency_key}
        if quantity <= int(item.get("quantity") or 0):
            with _stripe_errors():
                updated = self._v1.subscriptions.update(
                    subscription_id, {"items": items, "proration_behavior": "none"}, options
                )
            return QuantityChange(subscription=parse_subscription(_plain(updated)), invoice=None)

        params: SubscriptionUpdateParams = {
            "items": items,
            "proration_behavior": "always_invoice",
            "payment_behavior": "pending_if_incomplete",
            "expand": ["latest_invoice"],
        }
        if proration_date is not None:
            params["proration_date"] = _timestamp(proration_date)
        with _stripe_errors():
            updated = self._v1.subscriptions.update(subscription_id, params, options)
        data = _plain(updated)
        latest = data.get("latest_invoice")
        if not isinstance(latest, dict):
            raise GatewayError(f"Stripe returned no invoice for the increase of {subscription_id}")
        invoice = parse_invoice(latest)
        if data.get("pending_update") or not invoice.paid:
            failure = self._payment_failure(invoice_id=invoice.id)
            if failure.needs_authentication:
                failure.action_url = invoice.hosted_invoice_url
            raise failure
        return QuantityChange(subscription=parse_subscription(data), invoice=invoice)

    def subscription_cancel_at_period_end(self, *, subscription_id: str) -> Subscription:
        with _stripe_errors():
            subscription = self._v1.subscriptions.update(
                subscription_id, {"cancel_at_period_end": True}
            )
        return parse_subscription(_plain(subscription))

    def subscription_resume(self, *, subscription_id: str) -> Subscription:
        with _stripe_errors():
            subscription = self._v1.subscriptions.update(
                subscription_id, {"cancel_at_period_end": False}
            )
        return parse_subscription(_plain(subscription))

    # Invoices

    def invoice_list(self, *, customer_id: str, limit: int | None = 100) -> list[Invoice]:
        if limit is not None and limit <= 0:
            return []
        # The payments that paid each invoice are an includable field, asked for with expand
        # (https://docs.stripe.com/api/invoice-payment/list, https://docs.stripe.com/expand).
        invoices = self._paged(
            self._v1.invoices.list,
            {"customer": customer_id, "expand": ["data.payments"]},
            limit=limit,
        )
        return [parse_invoice(invoice) for invoice in invoices]

    def invoice_retrieve(self, *, invoice_id: str) -> Invoice:
        with _stripe_errors():
            invoice = self._v1.invoices.retrieve(invoice_id)
        return parse_invoice(_plain(invoice))

    def invoice_finalize(self, *, invoice_id: str) -> Invoice:
        current = self.invoice_retrieve(invoice_id=invoice_id)
        if current.status != "draft":
            return current
        # auto_advance false: the caller pays it at once (`invoice_pay`), so Stripe's own
        # collection must not try it a second time meanwhile.
        with _stripe_errors():
            invoice = self._v1.invoices.finalize_invoice(invoice_id, {"auto_advance": False})
        return parse_invoice(_plain(invoice))

    def invoice_pay(
        self,
        *,
        invoice_id: str,
        idempotency_key: str,
        off_session: bool = True,
        return_url: str = "",
    ) -> Invoice:
        try:
            return self._pay(invoice_id, off_session=off_session, key=idempotency_key)
        except CardError as failure:
            if failure.needs_authentication:
                failure.action_url = self.invoice_retrieve(invoice_id=invoice_id).hosted_invoice_url
            raise

    def invoice_void(self, *, invoice_id: str) -> Invoice:
        try:
            with _stripe_errors():
                return parse_invoice(_plain(self._v1.invoices.void_invoice(invoice_id)))
        except GatewayError:
            # Stripe voids some invoices itself (an expired pending update): already void is
            # what was asked; anything else is the error it was.
            current = self.invoice_retrieve(invoice_id=invoice_id)
            if current.status == "void":
                return current
            raise

    def invoice_last_payment(self, *, invoice_id: str) -> PaymentAttempt | None:
        with _stripe_errors():
            payments = self._v1.invoice_payments.list(
                {"invoice": invoice_id, "limit": 1, "expand": ["data.payment.payment_intent"]}
            )
        for payment in payments.data:
            intent = (_plain(payment).get("payment") or {}).get("payment_intent")
            if isinstance(intent, dict):
                return parse_payment_attempt(intent)
        return None

    # Refunds and disputes

    def payment_invoice_id(self, *, payment_intent: str) -> str:
        # Charges and PaymentIntents name no invoice since API 2025-03-31; InvoicePayments link
        # them (https://docs.stripe.com/changelog/basil/2025-03-31/add-support-for-multiple-partial-payments-on-invoices).
        if not payment_intent:
            return ""
        with _stripe_errors():
            payments = self._v1.invoice_payments.list(
                {
                    "payment": {"type": "payment_intent", "payment_intent": payment_intent},
                    "limit": 1,
                }
            )
        return str(payments.data[0].invoice) if payments.data else ""

    def refund_create(
        self,
        *,
        invoice_id: str,
        amount: int,
        reason: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> Refund:
        with _stripe_errors():
            payments = self._v1.invoice_payments.list(
                {"invoice": invoice_id, "status": "paid", "limit": 1}
            )
            intent = next(
                (
                    str((_plain(payment).get("payment") or {}).get("payment_intent") or "")
                    for payment in payments.data
                ),
                "",
            )
            if not intent:
                raise GatewayError(
                    f"Stripe has no paid payment for invoice {invoice_id}",
                    permanent=True,
                    code="resource_missing",
                )
            refund = self._v1.refunds.create(
                {
                    "payment_intent": intent,
                    "amount": amount,
                    "reason": reason,
                    "metadata": metadata,
                },
                {"idempotency_key": idempotency_key},
            )
        return parse_refund(_plain(refund))

    def refund_list(self, *, payment_intent: str) -> list[Refund]:
        refunds = self._paged(self._v1.refunds.list, {"payment_intent": payment_intent})
        return [parse_refund(refund) for refund in refunds]

    def dispute_retrieve(self, *, dispute_id: str) -> Dispute:
        with _stripe_errors():
            return parse_dispute(_plain(self._v1.disputes.retrieve(dispute_id)))

    def payment_list(self, *, customer_id: str) -> list[Payment]:
        # Refunds and disputes cannot be listed by customer; the customer's charges say which
        # payments have any (https://docs.stripe.com/api/charges/list).
        charges = self._paged(self._v1.charges.list, {"customer": customer_id})
        return [parse_payment(charge) for charge in charges]

    def dispute_list(self, *, payment_intent: str) -> list[Dispute]:
        disputes = self._paged(self._v1.disputes.list, {"payment_intent": payment_intent})
        return [parse_dispute(dispute) for dispute in disputes]

    # Helpers

    def _paged(
        self,
        fetch: Callable[[Any], Any],
        params: dict[str, Any],
        *,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Every object of a list (or the first `limit`), page by page: each next page starts
        after the last object of the one before (`starting_after`,
        https://docs.stripe.com/api/pagination), and each request waits for a token of the
        process's read bucket (payments.ratelimit) so that long reads stay under Stripe's
        rate limit."""
        params = {**params, "limit": min(limit or _PAGE_LIMIT, _PAGE_LIMIT)}
        found: list[dict[str, Any]] = []
        while limit is None or len(found) < limit:
            gateway_reads().take()
            with _stripe_errors():
                page = fetch(params)
            objects = [_plain(obj) for obj in page.data]
            found.extend(objects)
            if not page.has_more or not objects:
                break
            params = {**params, "starting_after": objects[-1]["id"]}
        return found if limit is None else found[:limit]

    def _subscription_data(self, subscription_id: str) -> dict[str, Any]:
        with _stripe_errors():
            return _plain(self._v1.subscriptions.retrieve(subscription_id))

    def _payment_failure(self, *, invoice_id: str) -> CardError:
        """Why the invoice's last payment attempt failed, as far as Stripe tells."""
        try:
            attempt = self.invoice_last_payment(invoice_id=invoice_id)
        except GatewayError as error:
            logger.warning("Could not read the payment of invoice %s: %s", invoice_id, error)
            return CardError(DECLINED_MESSAGE, invoice_id=invoice_id)
        if attempt is not None and attempt.needs_authentication:
            return CardError(
                AUTHENTICATION_MESSAGE,
                code=AUTHENTICATION_REQUIRED,
                decline_code=attempt.decline_code,
                invoice_id=invoice_id,
            )
        if attempt is not None and attempt.code:
            return CardError(
                attempt.message or DECLINED_MESSAGE,
                code=attempt.code,
                decline_code=attempt.decline_code,
                invoice_id=invoice_id,
            )
        return CardError(DECLINED_MESSAGE, invoice_id=invoice_id)
