"""The gateway's books against ours, for one payer.

`gateway_books` reads what the gateway says about a payer (the customer; its subscriptions; its
invoices with the payments that paid them; its payments and, for those with any, their refunds
and disputes) before any transaction opens. `differences` compares that with the local books
and returns each difference, with its heal where healing is safe: applying the gateway's truth
through the very service a webhook would have called, idempotent by its ledger key or by the
object's own progress, so that a heal run twice (or beside the late webhook) moves nothing more.
Whatever would give money without a gateway record or take it from a customer has no heal: it
waits for staff. `account_differences` compares each credit account's cached balance and held
amount with its ledger and its active holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from django.db.models import F, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from accounts.models import User
from billing.models import BillingProfile
from billing.services import gateway_customer_forget
from credits.models import CreditAccount, Hold, LedgerEntry, Purchase
from credits.services import (
    purchase_checkout_payment_record,
    purchase_dispute_record,
    purchase_invoice_record,
    purchase_mark_paid,
    purchase_refund_record,
)
from invoices.models import Invoice as LocalInvoice
from invoices.selectors import overdue_invoices
from invoices.services import invoice_reversals_sync, invoice_sync
from organizations.models import Organization
from payments.gateway import (
    BillingGateway,
    Customer,
    Dispute,
    Invoice,
    Payment,
    Refund,
    Subscription,
)
from reconciliation.models import Finding
from seats.models import SeatSubscription
from seats.services import METADATA_PURPOSE as SEATS_PURPOSE
from seats.services import seat_subscription_refresh

Kind = Finding.Kind

PURCHASE_KINDS = frozenset({Purchase.Kind.CREDIT_PURCHASE, Purchase.Kind.AUTO_TOPUP})
CREDIT_SOURCES = (LedgerEntry.Source.PURCHASE, LedgerEntry.Source.AUTO_TOPUP)
REVERSAL_SOURCES = (LedgerEntry.Source.REFUND, LedgerEntry.Source.DISPUTE)

# The kinds a payer's check decides (the gateway's books against ours), and those of its credit
# account (the cached columns against the ledger and the holds).
PAYER_KINDS = frozenset(
    {
        Kind.PAID_NOT_CREDITED,
        Kind.CREDITED_WITHOUT_PAYMENT,
        Kind.REFUND_NOT_APPLIED,
        Kind.DISPUTE_NOT_APPLIED,
        Kind.INVOICE_MISSING,
        Kind.INVOICE_DIFFERS,
        Kind.SUBSCRIPTION_DIFFERS,
        Kind.CUSTOMER_GONE,
        Kind.LIFECYCLE_DIFFERS,
    }
)
ACCOUNT_KINDS = frozenset({Kind.BALANCE_DIFFERS, Kind.HELD_DIFFERS})

# Heals run in this order: the invoice copies first (a refund shows on its invoice), the seats,
# then credits before what takes them back; a customer gone is forgotten last.
HEAL_ORDER = (
    Kind.INVOICE_MISSING,
    Kind.INVOICE_DIFFERS,
    Kind.SUBSCRIPTION_DIFFERS,
    Kind.PAID_NOT_CREDITED,
    Kind.REFUND_NOT_APPLIED,
    Kind.DISPUTE_NOT_APPLIED,
    Kind.CUSTOMER_GONE,
)


@dataclass(frozen=True)
class Payer:
    """Who pays: an organization or a person, with its billing profile (None for a credit
    account that has none) and its credit account (None before it has one)."""

    label: str
    organization: Organization | None
    user: User | None
    profile: BillingProfile | None
    account: CreditAccount | None

    @property
    def customer_id(self) -> str:
        return self.profile.gateway_customer_id if self.profile else ""


def payer_label(*, organization_id: Any = None, user_id: Any = None, account_id: Any = None) -> str:
    """How findings and `reconcile --json` name a payer: the organization's id, `user:<id>`
    for a personal account, `account:<id>` for a credit account whose holder is gone."""
    if organization_id is not None:
        return str(organization_id)
    if user_id is not None:
        return f"user:{user_id}"
    return f"account:{account_id}"


def payer_of_profile(profile: BillingProfile) -> Payer:
    organization, user = profile.organization, profile.user
    accounts = (
        CreditAccount.objects.filter(organization=organization)
        if organization is not None
        else CreditAccount.objects.filter(user=user)
        if user is not None
        else CreditAccount.objects.none()
    )
    return Payer(
        label=payer_label(organization_id=profile.organization_id, user_id=profile.user_id),
        organization=organization,
        user=user,
        profile=profile,
        account=accounts.first(),
    )


@dataclass(frozen=True)
class Difference:
    """One difference: what each side says, the local object it is about, and the heal (None
    when staff must decide; `why_open` then says why)."""

    kind: str
    gateway_id: str
    local: str
    gateway_says: dict[str, Any]
    local_says: dict[str, Any]
    local_object: Any = None
    heal: Callable[[], Any] | None = field(default=None, compare=False)
    why_open: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.gateway_id)


# The gateway's side


@dataclass(frozen=True)
class GatewayBooks:
    """Everything the gateway says about one customer, read at `now` (the gateway's clock)."""

    customer: Customer
    now: datetime
    subscriptions: list[Subscription] = field(default_factory=list)
    invoices: list[Invoice] = field(default_factory=list)
    payments: list[Payment] = field(default_factory=list)
    refunds: dict[str, list[Refund]] = field(default_factory=dict)  # by payment intent
    disputes: dict[str, list[Dispute]] = field(default_factory=dict)  # by payment intent
    invoice_of_payment: dict[str, str] = field(default_factory=dict)
    reads: int = 0


def _payment_intents_reversed_here(payer: Payer) -> tuple[set[str], set[str]]:
    """Payments (and invoices) the local books say were refunded or disputed: read again from
    the gateway even when its charge no longer shows it (a refund that failed later)."""
    payment_intents: set[str] = set()
    invoices: set[str] = set()
    if payer.account is not None:
        for intent, invoice_id in Purchase.objects.filter(
            account=payer.account, reversals__isnull=False
        ).values_list("payment_intent_id", "gateway_invoice_id"):
            payment_intents.add(intent)
            invoices.add(invoice_id)
    if payer.profile is not None:
        invoices.update(
            LocalInvoice.objects.filter(billing_profile=payer.profile)
            .filter(Q(amount_refunded__gt=0) | ~Q(dispute_status=""))
            .values_list("gateway_id", flat=True)
        )
    return payment_intents - {""}, invoices - {""}


def gateway_books(gateway: BillingGateway, payer: Payer) -> GatewayBooks:
    """Read the payer's books from the gateway. Never call inside a transaction: these are
    network requests with Stripe (several pages each, rate-limited)."""
    reads = 1
    customer = gateway.customer_retrieve(customer_id=payer.customer_id)
    now = gateway.now()
    if customer.deleted:
        return GatewayBooks(customer=customer, now=now, reads=reads)
    subscriptions = gateway.subscription_list(customer_id=customer.id)
    invoices = gateway.invoice_list(customer_id=customer.id, limit=None)
    payments = gateway.payment_list(customer_id=customer.id)
    reads += 3
    invoice_of_payment = {
        payment.payment_intent: invoice.id
        for invoice in invoices
        for payment in invoice.payments
        if payment.payment_intent
    }
    payment_of_invoice = {invoice: intent for intent, invoice in invoice_of_payment.items()}
    local_intents, local_invoices = _payment_intents_reversed_here(payer)
    local_intents |= {payment_of_invoice[i] for i in local_invoices if i in payment_of_invoice}
    refunded = {p.payment_intent for p in payments if p.amount_refunded > 0 and p.payment_intent}
    disputed = {p.payment_intent for p in payments if p.disputed and p.payment_intent}
    refunds = {}
    for intent in sorted(refunded | local_intents):
        refunds[intent] = gateway.refund_list(payment_intent=intent)
        reads += 1
    disputes = {}
    for intent in sorted(disputed | local_intents):
        disputes[intent] = gateway.dispute_list(payment_intent=intent)
        reads += 1
    for intent in sorted((refunded | disputed | local_intents) - set(invoice_of_payment)):
        invoice_of_payment[intent] = gateway.payment_invoice_id(payment_intent=intent)
        reads += 1
    return GatewayBooks(
        customer=customer,
        now=now,
        subscriptions=subscriptions,
        invoices=invoices,
        payments=payments,
        refunds={intent: found for intent, found in refunds.items() if found},
        disputes={intent: found for intent, found in disputes.items() if found},
        invoice_of_payment=invoice_of_payment,
        reads=reads,
    )


# Both sides, compared


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _invoice_says(invoice: Invoice) -> dict[str, Any]:
    return {
        "status": invoice.status,
        "amount_due": invoice.amount_due,
        "amount_paid": invoice.amount_paid,
        "amount_remaining": invoice.amount_remaining,
        "number": invoice.number,
        "billing_reason": invoice.billing_reason,
    }


def _local_invoice_says(invoice: LocalInvoice) -> dict[str, Any]:
    return {
        "status": invoice.status,
        "amount_due": invoice.amount_due,
        "amount_paid": invoice.amount_paid,
        "amount_remaining": invoice.amount_remaining,
        "number": invoice.number,
        "billing_reason": invoice.billing_reason,
    }


_COMPARED = ("status", "amount_due", "amount_paid", "amount_remaining")


def _invoice_differences(
    payer: Payer, books: GatewayBooks, local: dict[str, LocalInvoice]
) -> list[Difference]:
    found = []
    for invoice in books.invoices:
        mine = local.get(invoice.id)
        sync = partial(invoice_sync, invoice=invoice, observed_at=books.now)
        if mine is None:
            found.append(
                Difference(
                    kind=Kind.INVOICE_MISSING,
                    gateway_id=invoice.id,
                    local="no copy here",
                    gateway_says=_invoice_says(invoice),
                    local_says={"exists": False},
                    heal=sync,
                )
            )
            continue
        theirs, ours = _invoice_says(invoice), _local_invoice_says(mine)
        if any(theirs[name] != ours[name] for name in _COMPARED):
            # invoice_sync applies the gateway's copy only when it is not behind ours (a late
            # event never undoes progress); when ours is ahead, the re-check keeps it open.
            found.append(
                Difference(
                    kind=Kind.INVOICE_DIFFERS,
                    gateway_id=invoice.id,
                    local=f"invoice {mine.display_number}",
                    local_object=mine,
                    gateway_says=theirs,
                    local_says=ours,
                    heal=sync,
                    why_open="The local copy is ahead of the gateway's: invoice_sync never "
                    "moves an invoice back (it would restart the lifecycle on our word alone).",
                )
            )
    listed = {invoice.id for invoice in books.invoices}
    for gateway_id, mine in local.items():
        if gateway_id not in listed:
            found.append(
                Difference(
                    kind=Kind.INVOICE_DIFFERS,
                    gateway_id=gateway_id,
                    local=f"invoice {mine.display_number}",
                    local_object=mine,
                    gateway_says={"exists": False},
                    local_says=_local_invoice_says(mine),
                    why_open="The gateway has no such invoice for this customer.",
                )
            )
    return found


def _purchase_id(metadata: dict[str, str]) -> int | None:
    if metadata.get("kind") not in PURCHASE_KINDS:
        return None
    try:
        return int(metadata["purchase_id"])
    except (KeyError, ValueError):
        return None


def _paid_intent(invoice: Invoice) -> str:
    return next(
        (payment.payment_intent for payment in invoice.payments if payment.status == "paid"), ""
    )


def _credit(purchase: Purchase, invoice: Invoice) -> None:
    """What `invoice.paid` (or `checkout.session.completed`) would have done for a purchase."""
    purchase_invoice_record(purchase_id=purchase.pk, invoice=invoice)
    if purchase.checkout_session_id:
        purchase_checkout_payment_record(
            purchase_id=purchase.pk, payment_intent=_paid_intent(invoice)
        )
    purchase_mark_paid(purchase_id=purchase.pk, invoice_id=invoice.id)


@dataclass
class _Purchases:
    """The payer's purchases as the gateway's invoices and the ledger see them."""

    by_pk: dict[int, Purchase]
    credited: set[str]  # ledger keys in the purchase namespaces
    reversal_keys: set[tuple[str, str]]
    invoice_of: dict[int, Invoice] = field(default_factory=dict)  # purchase pk → gateway invoice
    by_invoice: dict[str, Purchase] = field(default_factory=dict)  # their gateway invoice ids

    def __post_init__(self) -> None:
        self.by_invoice = {
            p.gateway_invoice_id: p for p in self.by_pk.values() if p.gateway_invoice_id
        }

    def for_invoice(self, invoice_id: str) -> Purchase | None:
        return self.by_invoice.get(invoice_id) if invoice_id else None

    def for_payment(self, payment_intent: str, invoice_id: str) -> Purchase | None:
        if invoice_id and (purchase := self.for_invoice(invoice_id)):
            return purchase
        return next((p for p in self.by_pk.values() if p.payment_intent_id == payment_intent), None)

    def is_credited(self, purchase: Purchase) -> bool:
        return str(purchase.pk) in self.credited


def _purchases(payer: Payer) -> _Purchases:
    if payer.account is None:
        return _Purchases(by_pk={}, credited=set(), reversal_keys=set())
    entries = LedgerEntry.objects.filter(account=payer.account)
    return _Purchases(
        by_pk={p.pk: p for p in Purchase.objects.filter(account=payer.account)},
        credited=set(
            entries.filter(source__in=CREDIT_SOURCES).values_list("idempotency_key", flat=True)
        ),
        reversal_keys=set(
            entries.filter(source__in=REVERSAL_SOURCES).values_list("source", "idempotency_key")
        ),
    )


def _purchase_differences(
    payer: Payer, books: GatewayBooks, purchases: _Purchases
) -> list[Difference]:
    found = []
    for invoice in books.invoices:
        pk = _purchase_id(invoice.metadata)
        purchase = purchases.for_invoice(invoice.id) or purchases.by_pk.get(pk or 0)
        if purchase is None:
            if pk is not None and invoice.paid:
                found.append(
                    Difference(
                        kind=Kind.PAID_NOT_CREDITED,
                        gateway_id=invoice.id,
                        local=f"no purchase {pk} here",
                        gateway_says=_invoice_says(invoice),
                        local_says={"purchase": None},
                        why_open="The gateway's invoice names a purchase these books do not "
                        "have: there is nothing to credit it to.",
                    )
                )
            continue
        purchases.invoice_of[purchase.pk] = invoice
        purchases.by_invoice.setdefault(invoice.id, purchase)
        if invoice.paid and not purchases.is_credited(purchase):
            found.append(
                Difference(
                    kind=Kind.PAID_NOT_CREDITED,
                    gateway_id=invoice.id,
                    local=f"purchase {purchase.pk}",
                    local_object=purchase,
                    gateway_says=_invoice_says(invoice),
                    local_says={
                        "status": purchase.status,
                        "amount_cents": purchase.amount_cents,
                        "credited": False,
                    },
                    # A purchase marked paid whose credit is missing from the ledger cannot be
                    # credited by the service (it credits once, by its status): staff decide.
                    heal=partial(_credit, purchase, invoice)
                    if purchase.status != Purchase.Status.PAID
                    else None,
                    why_open="The purchase says it is paid but its ledger credit is missing.",
                )
            )
    for purchase in purchases.by_pk.values():
        if not purchases.is_credited(purchase):
            continue
        paid_by = purchases.invoice_of.get(purchase.pk)
        if paid_by is not None and paid_by.paid and paid_by.amount_paid >= purchase.amount_cents:
            continue
        found.append(
            Difference(
                kind=Kind.CREDITED_WITHOUT_PAYMENT,
                gateway_id=paid_by.id
                if paid_by is not None
                else purchase.gateway_invoice_id
                or purchase.checkout_session_id
                or f"none:purchase-{purchase.pk}",
                local=f"purchase {purchase.pk}",
                local_object=purchase,
                gateway_says=_invoice_says(paid_by) if paid_by else {"exists": False},
                local_says={
                    "status": purchase.status,
                    "amount_cents": purchase.amount_cents,
                    "credited": True,
                },
                why_open="Credits were given without a payment the gateway knows of: taking "
                "them back, or asking for the money, is for staff to decide.",
            )
        )
    known = {str(pk) for pk in purchases.by_pk}
    for key in sorted(purchases.credited - known):
        found.append(
            Difference(
                kind=Kind.CREDITED_WITHOUT_PAYMENT,
                gateway_id=f"none:ledger-{key}",
                local=f"ledger credit {key}",
                gateway_says={"exists": False},
                local_says={"purchase": None, "credited": True},
                why_open="A purchase credit in the ledger with no purchase behind it.",
            )
        )
    return found


def _apply_refunds(
    purchase: Purchase | None, refund: Refund, invoice_id: str, refunds: list[Refund]
) -> None:
    """What a refund's events would have done: the credits taken back (or given back when the
    refund failed), and the invoice showing what went back."""
    if purchase is not None:
        purchase_refund_record(purchase=purchase, refund=refund)
    if invoice_id:
        invoice_reversals_sync(gateway_invoice_id=invoice_id, refunds=refunds, dispute=None)


def _apply_dispute(
    purchase: Purchase | None, dispute: Dispute, invoice_id: str, refunds: list[Refund]
) -> None:
    if purchase is not None:
        purchase_dispute_record(purchase=purchase, dispute=dispute)
    if invoice_id:
        invoice_reversals_sync(gateway_invoice_id=invoice_id, refunds=refunds, dispute=dispute)


@dataclass(frozen=True)
class _Reversed:
    """One payment with refunds or disputes, and what the local books hold of it."""

    intent: str
    invoice_id: str
    credited: Purchase | None  # its purchase, if credited (only then are credits taken back)
    copy: LocalInvoice | None  # the local copy of the invoice it paid
    refunds: list[Refund]
    keys: set[tuple[str, str]]  # the account's refund and dispute ledger keys

    @property
    def where(self) -> str:
        if self.credited is not None:
            return f"purchase {self.credited.pk}"
        return f"invoice {self.copy}" if self.copy is not None else self.intent

    def has(self, source: str, key: str) -> bool:
        return (source, key) in self.keys


def _refund_differences(payment: _Reversed) -> list[Difference]:
    found = []
    refunds, copy = payment.refunds, payment.copy
    went_back = sum(refund.amount for refund in refunds if refund.takes_money_back)
    # Refunds are listed newest first; a wrong total on the invoice is the newest's to fix.
    newest = next((r for r in refunds if r.takes_money_back), refunds[0] if refunds else None)
    for refund in refunds:
        missing = []
        if payment.credited is not None:
            taken = payment.has(LedgerEntry.Source.REFUND, refund.id)
            given = payment.has(LedgerEntry.Source.REFUND, f"{refund.id}:failed")
            if refund.takes_money_back and not taken:
                missing.append("credits not taken back")
            if not refund.takes_money_back and taken and not given:
                missing.append("credits of a failed refund not given back")
        if copy is not None and refund is newest and copy.amount_refunded != went_back:
            missing.append("invoice's refunded total")
        if not missing:
            continue
        found.append(
            Difference(
                kind=Kind.REFUND_NOT_APPLIED,
                gateway_id=refund.id,
                local=payment.where,
                local_object=payment.credited or copy,
                gateway_says={
                    "amount": refund.amount,
                    "status": refund.status,
                    "payment_intent": payment.intent,
                    "invoice": payment.invoice_id,
                    "refunded_in_all": went_back,
                },
                local_says={
                    "missing": missing,
                    "invoice_amount_refunded": copy.amount_refunded if copy else None,
                },
                heal=partial(
                    _apply_refunds,
                    payment.credited,
                    refund,
                    payment.invoice_id if copy else "",
                    refunds,
                ),
            )
        )
    return found


def _dispute_differences(payment: _Reversed, disputes: list[Dispute]) -> list[Difference]:
    found = []
    copy = payment.copy
    for dispute in disputes:
        missing = []
        if payment.credited is not None:
            if dispute.withdraws_funds and not payment.has(LedgerEntry.Source.DISPUTE, dispute.id):
                missing.append("credits not taken back")
            if dispute.won and not payment.has(LedgerEntry.Source.DISPUTE, f"{dispute.id}:won"):
                missing.append("credits of a dispute won not given back")
        # The invoice shows one dispute: the newest.
        shown = copy if dispute is disputes[0] else None
        if shown is not None and (shown.dispute_status, shown.dispute_amount) != (
            dispute.status,
            dispute.amount,
        ):
            missing.append("invoice's dispute")
        if not missing:
            continue
        found.append(
            Difference(
                kind=Kind.DISPUTE_NOT_APPLIED,
                gateway_id=dispute.id,
                local=payment.where,
                local_object=payment.credited or copy,
                gateway_says={
                    "amount": dispute.amount,
                    "status": dispute.status,
                    "payment_intent": payment.intent,
                    "invoice": payment.invoice_id,
                },
                local_says={
                    "missing": missing,
                    "invoice_dispute_status": copy.dispute_status if copy else None,
                },
                heal=partial(
                    _apply_dispute,
                    payment.credited,
                    dispute,
                    payment.invoice_id if shown is not None else "",
                    payment.refunds,
                ),
            )
        )
    return found


def _reversal_differences(
    books: GatewayBooks, local: dict[str, LocalInvoice], purchases: _Purchases
) -> list[Difference]:
    found = []
    for intent in sorted(set(books.refunds) | set(books.disputes)):
        invoice_id = books.invoice_of_payment.get(intent, "")
        purchase = purchases.for_payment(intent, invoice_id)
        payment = _Reversed(
            intent=intent,
            invoice_id=invoice_id,
            # Credits can only be taken back once given (PAID_NOT_CREDITED heals first).
            credited=purchase if purchase and purchases.is_credited(purchase) else None,
            copy=local.get(invoice_id),
            refunds=books.refunds.get(intent, []),
            keys=purchases.reversal_keys,
        )
        found += _refund_differences(payment)
        found += _dispute_differences(payment, books.disputes.get(intent, []))
    return found


def _subscription_says(subscription: Subscription | SeatSubscription) -> dict[str, Any]:
    return {
        "status": str(subscription.status),
        "quantity": subscription.quantity,
        "current_period_end": _when(subscription.current_period_end),
        "cancel_at_period_end": subscription.cancel_at_period_end,
    }


def _subscription_differences(payer: Payer, books: GatewayBooks) -> list[Difference]:
    organization = payer.organization
    if organization is None:
        return []
    found = []
    row = SeatSubscription.objects.filter(organization=organization).first()
    seats = [s for s in books.subscriptions if s.metadata.get("purpose") == SEATS_PURPOSE]
    if row is not None:
        theirs = next((s for s in seats if s.id == row.gateway_subscription_id), None)
        ours = _subscription_says(row)
        if theirs is None:
            if row.is_live:
                found.append(
                    Difference(
                        kind=Kind.SUBSCRIPTION_DIFFERS,
                        gateway_id=row.gateway_subscription_id,
                        local=f"seat subscription of {organization.name}",
                        local_object=row,
                        gateway_says={"exists": False},
                        local_says=ours,
                        why_open="Seats live here that the gateway does not bill.",
                    )
                )
        elif _subscription_says(theirs) != ours:
            # More seats here than billed (fewer seats, or none live, at the gateway) is staff's
            # to decide: members would lose seats on the gateway's word.
            fewer = row.is_live and (
                theirs.status not in SeatSubscription.LIVE_STATUSES
                or theirs.quantity < row.quantity
            )
            found.append(
                Difference(
                    kind=Kind.SUBSCRIPTION_DIFFERS,
                    gateway_id=theirs.id,
                    local=f"seat subscription of {organization.name}",
                    local_object=row,
                    gateway_says=_subscription_says(theirs),
                    local_says=ours,
                    heal=None
                    if fewer
                    else partial(seat_subscription_refresh, subscription_id=theirs.id),
                    why_open="More seats here than the gateway bills.",
                )
            )
    known = row.gateway_subscription_id if row is not None else ""
    for subscription in seats:
        if subscription.id == known or subscription.status not in SeatSubscription.LIVE_STATUSES:
            continue
        found.append(
            Difference(
                kind=Kind.SUBSCRIPTION_DIFFERS,
                gateway_id=subscription.id,
                local=f"seat subscription {known}" if known else "no seat subscription here",
                local_object=row,
                gateway_says=_subscription_says(subscription),
                local_says=_subscription_says(row) if row is not None else {"exists": False},
                # Billed seats this organization does not have yet: the refresh gives them (it
                # never replaces live seats, so a second live subscription stays for staff).
                heal=None
                if row is not None and row.is_live
                else partial(seat_subscription_refresh, subscription_id=subscription.id),
                why_open="The gateway bills a second live seat subscription.",
            )
        )
    return found


def _lifecycle_differences(payer: Payer) -> list[Difference]:
    """An organization held in grace or suspension for money it no longer owes: restoring it is
    the lifecycle's (staff restore it in the admin); a staff suspension is its own reason."""
    organization = payer.organization
    if organization is None or organization.suspended_by_staff:
        return []
    State = Organization.BillingState
    if organization.billing_state not in (State.GRACE, State.SUSPENDED):
        return []
    if overdue_invoices(organization=organization).exists():
        return []
    return [
        Difference(
            kind=Kind.LIFECYCLE_DIFFERS,
            gateway_id="",
            local=f"organization {organization.name}",
            local_object=organization,
            gateway_says={"overdue_invoices": 0},
            local_says={"billing_state": organization.billing_state},
            why_open="Nothing is overdue: restore it in the lifecycle's admin if it should be.",
        )
    ]


def differences(payer: Payer, books: GatewayBooks) -> list[Difference]:
    """Every difference between the gateway's books (as read) and the local books (as they are
    now) for one payer with a gateway customer."""
    if books.customer.deleted:
        still_named = (
            payer.profile is not None
            and BillingProfile.objects.filter(
                pk=payer.profile.pk, gateway_customer_id=books.customer.id
            ).exists()
        )
        if not still_named:  # forgotten here since it was read: nothing differs any more
            return []
        return [
            Difference(
                kind=Kind.CUSTOMER_GONE,
                gateway_id=books.customer.id,
                local=f"billing profile {payer.profile.pk}" if payer.profile else payer.label,
                local_object=payer.profile,
                gateway_says={"deleted": True},
                local_says={"gateway_customer_id": books.customer.id},
                # Forgotten here as customer.deleted's handler does (billing); the seats it
                # billed end through the subscription's own difference.
                heal=partial(gateway_customer_forget, customer_id=books.customer.id),
            )
        ]
    local = (
        {invoice.gateway_id: invoice for invoice in payer.profile.invoices.all()}
        if payer.profile is not None
        else {}
    )
    purchases = _purchases(payer)
    return [
        *_invoice_differences(payer, books, local),
        *_purchase_differences(payer, books, purchases),
        *_reversal_differences(books, local, purchases),
        *_subscription_differences(payer, books),
        *_lifecycle_differences(payer),
    ]


# Credit accounts: the cached columns against the ledger and the holds


def accounts_drifted(accounts: QuerySet[CreditAccount]) -> Iterable[CreditAccount]:
    """Accounts whose balance is not the sum of their ledger, or whose `held` is not the sum of
    their active holds (annotated `ledger` and `active_holds`): one query."""
    ledger = (
        LedgerEntry.objects.filter(account=OuterRef("pk"))
        .order_by()
        .values("account")
        .annotate(total=Sum("amount"))
        .values("total")
    )
    holds = (
        Hold.objects.filter(account=OuterRef("pk"), status=Hold.Status.ACTIVE)
        .order_by()
        .values("account")
        .annotate(total=Sum("amount"))
        .values("total")
    )
    return (
        accounts.annotate(
            ledger=Coalesce(Subquery(ledger), 0), active_holds=Coalesce(Subquery(holds), 0)
        )
        .filter(~Q(balance=F("ledger")) | ~Q(held=F("active_holds")))
        .order_by("pk")
    )


def account_payer(account: CreditAccount) -> str:
    return payer_label(
        organization_id=account.organization_id, user_id=account.user_id, account_id=account.pk
    )


def account_differences(account: CreditAccount) -> list[Difference]:
    """For an account from `accounts_drifted`. Neither is healed: the ledger is append-only and
    the holds move only through their own functions, so which side is wrong is staff's call."""
    found = []
    ledger: int = account.ledger  # type: ignore[attr-defined]
    active_holds: int = account.active_holds  # type: ignore[attr-defined]
    if account.balance != ledger:
        found.append(
            Difference(
                kind=Kind.BALANCE_DIFFERS,
                gateway_id="",
                local=f"credit account {account.pk}",
                local_object=account,
                gateway_says={"ledger_sum": ledger},
                local_says={"balance": account.balance},
                why_open="The balance is not the sum of the ledger.",
            )
        )
    if account.held != active_holds:
        found.append(
            Difference(
                kind=Kind.HELD_DIFFERS,
                gateway_id="",
                local=f"credit account {account.pk}",
                local_object=account,
                gateway_says={"active_holds_sum": active_holds},
                local_says={"held": account.held},
                why_open="`held` is not the sum of the active holds.",
            )
        )
    return found
