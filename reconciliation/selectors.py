"""Reads: which payers a run checks, and the findings staff look at."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db.models import Q, QuerySet

from billing.models import BillingProfile
from credits.models import CreditAccount, Purchase
from payments.gateway import BillingGateway, GatewayError
from payments.models import WebhookEvent
from reconciliation.differences import payer_label
from reconciliation.models import Finding, ReconciliationRun

logger = logging.getLogger(__name__)

# Events received while the last run was going are read again: a little overlap costs nothing.
OVERLAP = timedelta(minutes=1)


def last_run_started() -> datetime | None:
    """When the last real (not dry) run started, less the overlap."""
    started = (
        ReconciliationRun.objects.filter(dry_run=False)
        .order_by("-started_at")
        .values_list("started_at", flat=True)
        .first()
    )
    return started - OVERLAP if started else None


def payers_with_customer() -> QuerySet[BillingProfile]:
    return BillingProfile.objects.exclude(gateway_customer_id="")


def _customers_of_payments(payment_intents: set[str], gateway: BillingGateway) -> set[str]:
    """The customers of payments whose events name none (a refund, a dispute): from the
    purchase that recorded the payment, from another stored event of the same payment, else
    from the gateway (the invoice the payment paid)."""
    customers: set[str] = set()
    left = set(payment_intents)
    for intent, organization_id, user_id in Purchase.objects.filter(
        payment_intent_id__in=left
    ).values_list("payment_intent_id", "account__organization_id", "account__user_id"):
        if organization_id is None and user_id is None:
            continue
        profile = BillingProfile.objects.filter(
            Q(organization_id=organization_id) if organization_id else Q(user_id=user_id)
        ).first()
        if profile is not None and profile.gateway_customer_id:
            customers.add(profile.gateway_customer_id)
            left.discard(intent)
    for intent in sorted(left):
        named = (
            WebhookEvent.objects.filter(
                Q(payload__data__object__payment_intent=intent)
                | Q(payload__data__object__id=intent)
            )
            .exclude(payload__data__object__customer=None)
            .values_list("payload__data__object__customer", flat=True)
            .first()
        )
        if isinstance(named, str) and named:
            customers.add(named)
            continue
        try:
            invoice_id = gateway.payment_invoice_id(payment_intent=intent)
            if invoice_id:
                customers.add(gateway.invoice_retrieve(invoice_id=invoice_id).customer)
        except GatewayError as error:
            logger.warning("reconciliation: whose payment is %s? %s", intent, error)
    return customers


def payers_with_activity(*, since: datetime, gateway: BillingGateway) -> QuerySet[BillingProfile]:
    """Payers with gateway activity: the customer named by each event the webhook inbox
    received since then, and by every event not processed (owed, failed, set aside for a
    person: the reconciler applies what it meant from the gateway's truth)."""
    settled = [WebhookEvent.Status.PROCESSED, WebhookEvent.Status.IGNORED]
    events = WebhookEvent.objects.filter(Q(received_at__gte=since) | ~Q(status__in=settled))
    customers: set[str] = set()
    payment_intents: set[str] = set()
    for event_type, named, object_id, intent in events.values_list(
        "type",
        "payload__data__object__customer",
        "payload__data__object__id",
        "payload__data__object__payment_intent",
    ).iterator():
        customer = named.get("id") if isinstance(named, dict) else named  # expanded or an id
        if isinstance(customer, str) and customer:
            customers.add(customer)
        elif (
            event_type.startswith("customer.")
            and not event_type.startswith("customer.subscription.")
            and isinstance(object_id, str)
        ):
            customers.add(object_id)  # the event's object is the customer itself
        elif isinstance(intent, str) and intent:
            payment_intents.add(intent)
    customers |= _customers_of_payments(payment_intents, gateway)
    return payers_with_customer().filter(gateway_customer_id__in=customers)


def accounts_of(profiles: QuerySet[BillingProfile]) -> QuerySet[CreditAccount]:
    return CreditAccount.objects.filter(
        Q(organization__in=profiles.exclude(organization=None).values("organization"))
        | Q(user__in=profiles.exclude(user=None).values("user"))
    )


def account_payers() -> list[str]:
    return [
        payer_label(organization_id=organization_id, user_id=user_id, account_id=pk)
        for pk, organization_id, user_id in CreditAccount.objects.values_list(
            "pk", "organization_id", "user_id"
        ).iterator()
    ]


def open_findings() -> QuerySet[Finding]:
    return Finding.objects.filter(state=Finding.State.OPEN).order_by("-last_seen")
