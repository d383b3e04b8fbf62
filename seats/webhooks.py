"""Seat handlers for the gateway's events. Each re-fetches the subscription from the gateway (the
source of truth) instead of trusting the event's copy, so that events may arrive twice and in any
order: an old event only triggers a fresh read of the newest state."""

from payments.dispatch import handles
from payments.gateway import (
    GatewayError,
    parse_checkout_session,
    parse_invoice,
    parse_subscription,
)
from payments.models import WebhookEvent
from seats import services


@handles(
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.pending_update_applied",
)
def subscription_changed(event: WebhookEvent) -> None:
    subscription_id = parse_subscription(event.object).id
    try:
        services.seat_subscription_refresh(subscription_id=subscription_id)
    except GatewayError as error:
        # Deleted with its customer and no longer readable: it ended, as the event says.
        if not (error.missing and event.type == "customer.subscription.deleted"):
            raise
        services.seat_subscription_gone(subscription_id=subscription_id)


@handles("customer.subscription.pending_update_expired")
def pending_update_expired(event: WebhookEvent) -> None:
    """Seats added but not paid in time: they never come, and their invoice is void."""
    services.seat_pending_update_expired(subscription_id=parse_subscription(event.object).id)


@handles("invoice.paid")
def invoice_paid(event: WebhookEvent) -> None:
    """Purchases, additions (also one paid later, after a declined charge) and renewals."""
    invoice = parse_invoice(event.object)
    if not invoice.subscription:
        return
    # The seats of an addition appear when its invoice is paid: mirror the new quantity first.
    services.seat_subscription_refresh(subscription_id=invoice.subscription)
    services.seat_invoice_paid(invoice=invoice)


@handles("checkout.session.completed")
def checkout_completed(event: WebhookEvent) -> None:
    session = parse_checkout_session(event.object)
    if session.mode == "subscription" and session.subscription:
        if session.metadata.get("purpose") == services.METADATA_PURPOSE:
            services.seats_checkout_card_save(session_id=session.id, status=session.status)
        services.seat_subscription_refresh(subscription_id=session.subscription)


@handles("checkout.session.expired")
def checkout_expired(event: WebhookEvent) -> None:
    services.seats_checkout_expired(session_id=parse_checkout_session(event.object).id)


@handles("customer.deleted")
def customer_deleted(event: WebhookEvent) -> None:
    """Its subscriptions were cancelled with it: the seats end (billing forgets the customer)."""
    customer_id = str(event.object.get("id") or "")
    if customer_id:
        services.seats_customer_deleted(customer_id=customer_id)
