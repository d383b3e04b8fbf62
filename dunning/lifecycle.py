"""The failed-payment lifecycle: a small state machine on the organization.

    active → grace → suspended → deleted, and back to active when the overdue invoices are paid.

Repeated failure on a seat invoice starts a grace period; the dunning sweep suspends when it ends
unpaid; the retention sweep deletes a suspended organization's data after the retention period,
keeping what accounting needs. Every move is a conditional UPDATE on the old state (so it happens
once however many workers race), a LifecycleTransition row, an audit event and, after commit, an
email to the owners and billing managers.
"""

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.urls import reverse

from accounts.models import User
from billing.clock import billing_now
from billing.notify import email_billing_contacts
from dunning.exceptions import LifecycleError
from dunning.models import LifecycleTransition
from invoices import selectors
from invoices.models import Invoice
from organizations.models import Organization
from organizations.services import audit_record
from payments.gateway import NO_PAYMENT_METHOD, hard_decline

logger = logging.getLogger(__name__)

State = Organization.BillingState

# Which moves exist. grace → grace is staff extending the deadline; suspended → grace is staff
# giving a suspended organization more time; → deleted from any state is closing it
# (`dunning.closing`: the owner's delete, or the retention purge of a suspended organization).
ALLOWED: dict[str, frozenset[str]] = {
    State.ACTIVE: frozenset({State.GRACE, State.SUSPENDED, State.DELETED}),
    State.GRACE: frozenset({State.ACTIVE, State.GRACE, State.SUSPENDED, State.DELETED}),
    State.SUSPENDED: frozenset({State.ACTIVE, State.GRACE, State.DELETED}),
    State.DELETED: frozenset(),
}


def _link(name: str, organization: Organization) -> str:
    return settings.SITE_URL + reverse(name, kwargs={"org_id": organization.pk})


def email_lifecycle(
    organization: Organization, subject: str, template: str, **context: Any
) -> None:
    email_billing_contacts(
        organization=organization,
        subject=subject,
        template=f"emails/{template}",
        context={
            "pay_url": _link("org_pay_now", organization),
            "billing_url": _link("org_billing", organization),
            "invoices_url": _link("org_invoices", organization),
            **context,
        },
    )


def transition_claim(
    *,
    organization: Organization,
    to_state: str,
    action: str,
    reason: str,
    now: datetime,
    allowed_from: Iterable[str],
    actor: User | None = None,
    invoice: Invoice | None = None,
    where: Q | None = None,
    **fields: Any,
) -> LifecycleTransition | None:
    """Move the organization from its current state to `to_state` if that move is allowed from
    it, claimed by a conditional UPDATE; None when it is not (or another worker moved first)."""
    current = (
        Organization.objects.filter(pk=organization.pk)
        .values_list("billing_state", flat=True)
        .first()
    )
    if current is None or current not in allowed_from or to_state not in ALLOWED[current]:
        return None
    resets: dict[str, dict[str, Any]] = {
        State.ACTIVE: {"grace_ends_at": None, "suspended_at": None},
        State.GRACE: {"suspended_at": None},
        State.SUSPENDED: {"grace_ends_at": None, "suspended_at": now},
        State.DELETED: {"grace_ends_at": None, "deleted_at": now},
    }
    reset = resets[to_state]
    updates = {
        "billing_state": to_state,
        "billing_state_since": now,
        "grace_reminder_sent_at": None,
        "deletion_notice_days": None,
        **reset,
        **fields,
    }
    claimed = Organization.objects.filter(
        where or Q(), pk=organization.pk, billing_state=current
    ).update(**updates)
    if not claimed:
        return None
    for name, value in updates.items():
        setattr(organization, name, value)
    details = {
        key: value.isoformat() if isinstance(value, datetime) else value
        for key, value in fields.items()
    }
    transition = LifecycleTransition.objects.create(
        organization=organization,
        from_state=current,
        to_state=to_state,
        reason=reason[:300],
        invoice=invoice,
        actor=actor,
        details=details,
        created_at=now,
    )
    audit_record(
        organization=organization,
        actor=actor,
        action=action,
        target=organization.name,
        from_state=current,
        to_state=to_state,
        reason=reason,
        invoice=invoice.number if invoice else "",
    )
    return transition


# The moves


@transaction.atomic
def organization_grace_start(
    *,
    organization: Organization,
    invoice: Invoice,
    reason: str,
    now: datetime | None = None,
) -> LifecycleTransition | None:
    """A seat invoice unpaid for good reason (repeated failure, a hard decline, no card, a week
    overdue, a chargeback; `reason` says which): active → grace until now +
    BILLING_GRACE_PERIOD."""
    now = now or billing_now()
    return transition_claim(
        organization=organization,
        to_state=State.GRACE,
        action="billing.grace_start",
        reason=reason,
        now=now,
        allowed_from={State.ACTIVE},
        invoice=invoice,
        grace_ends_at=now + settings.BILLING_GRACE_PERIOD,
    )


@transaction.atomic
def organization_grace_extend(
    *, organization: Organization, actor: User, reason: str, days: int
) -> LifecycleTransition:
    """Staff: push the grace deadline `days` further (from now when suspended or already past)."""
    now = billing_now()
    organization.refresh_from_db()
    if organization.billing_state not in (State.GRACE, State.SUSPENDED):
        raise LifecycleError(
            f"{organization.name} is {organization.get_billing_state_display().lower()}: "
            "only an organization in grace or suspension has a deadline to extend."
        )
    start = max(organization.grace_ends_at or now, now)
    transition = transition_claim(
        organization=organization,
        to_state=State.GRACE,
        action="billing.grace_extend",
        reason=reason,
        now=now,
        allowed_from={organization.billing_state},
        actor=actor,
        invoice=selectors.overdue_invoices(organization=organization).first(),
        grace_ends_at=start + timedelta(days=days),
    )
    if transition is None:
        raise LifecycleError("The organization changed meanwhile; look again and retry.")
    return transition


@transaction.atomic
def organization_suspend(
    *,
    organization: Organization,
    reason: str,
    actor: User | None = None,
    now: datetime | None = None,
    due_only: bool = False,
    retention: bool | None = None,
) -> LifecycleTransition | None:
    """Grace ended unpaid (the sweep, `due_only`) or staff said so: → suspended. Nothing is
    deleted; the API refuses and only billing pages stay open. The retention countdown runs
    for a suspension without staff, and for staff's only when they choose it (`retention`)."""
    now = now or billing_now()
    overdue = list(selectors.overdue_invoices(organization=organization))
    by_staff = actor is not None
    transition = transition_claim(
        organization=organization,
        to_state=State.SUSPENDED,
        action="billing.suspend",
        reason=reason,
        now=now,
        allowed_from={State.GRACE} if due_only else {State.ACTIVE, State.GRACE},
        actor=actor,
        invoice=overdue[0] if overdue else None,
        where=Q(grace_ends_at__lte=now) if due_only else None,
        suspension_reason=reason[:300],
        suspended_by_staff=by_staff,
        retention_scheduled=not by_staff if retention is None else retention,
    )
    if transition is not None:
        if by_staff:
            email_lifecycle(
                organization,
                f"{organization.name} is suspended by Kilo Billing staff",
                "billing_suspended_by_staff.txt",
                overdue=overdue,
                deletion_at=organization.deletion_due_at,
                reason=reason,
            )
        else:
            email_lifecycle(
                organization,
                f"{organization.name} is suspended: payment is overdue",
                "billing_suspended.txt",
                overdue=overdue,
                deletion_at=organization.deletion_due_at,
            )
    return transition


@transaction.atomic
def organization_restore(
    *,
    organization: Organization,
    reason: str,
    actor: User | None = None,
    invoice: Invoice | None = None,
    now: datetime | None = None,
) -> LifecycleTransition | None:
    """Paid (or staff said so): grace or suspended → active, at once."""
    transition = transition_claim(
        organization=organization,
        to_state=State.ACTIVE,
        action="billing.restore",
        reason=reason,
        now=now or billing_now(),
        allowed_from={State.GRACE, State.SUSPENDED},
        actor=actor,
        invoice=invoice,
    )
    if transition is not None:
        email_lifecycle(
            organization,
            f"{organization.name} is active again",
            "billing_restored.txt",
            reason=reason,
        )
    return transition


# Reactions to invoices


def grace_reason(invoice: Invoice) -> str:
    """Why this failed seat invoice starts grace now, or "" when it does not (yet). The rule of
    DESIGN.md: BILLING_FAILED_ATTEMPTS_BEFORE_GRACE attempts, or a renewal declined for good (a
    hard decline, or no card: Stripe does not retry those), or a week overdue (the sweep)."""
    if invoice.awaiting_authentication:
        return ""
    # A draft the gateway could not finalize counts as one failed attempt (docs/decisions.md).
    if invoice.failed_attempts >= settings.BILLING_FAILED_ATTEMPTS_BEFORE_GRACE:
        return (
            f"{invoice.failed_attempts} failed payment attempts on invoice {invoice.display_number}"
        )
    # A declined seat addition is not in use yet (its seats come when paid) and lapses in a day.
    if invoice.kind != Invoice.Kind.SEAT_SUBSCRIPTION:
        return ""
    if invoice.payment_error_code == NO_PAYMENT_METHOD:
        return f"no card to charge for invoice {invoice.display_number}"
    if hard_decline(code=invoice.payment_error_code, decline_code=invoice.payment_decline_code):
        why = invoice.payment_decline_code or invoice.payment_error_code
        return (
            f"invoice {invoice.display_number} declined ({why}): the card cannot be charged again"
        )
    return ""


def _finalization_failed(organization: Organization, invoice: Invoice) -> None:
    """The gateway could not finalize a seat invoice (invoice.finalization_failed): it is overdue
    at once, counts as one failed attempt, and is never retried by the gateway, so grace follows
    the usual rule (a second failure, or a week overdue)."""
    grace = None
    if reason := grace_reason(invoice):
        grace = organization_grace_start(organization=organization, invoice=invoice, reason=reason)
    organization.refresh_from_db()
    email_lifecycle(
        organization,
        f"A seat invoice for {organization.name} could not be issued",
        "billing_finalization_failed.txt",
        invoice=invoice,
        grace_started=grace is not None,
    )


def _declined_for_good(invoice: Invoice, previous_error: tuple[str, str]) -> bool:
    code, decline_code = invoice.payment_error_code, invoice.payment_decline_code
    return (code, decline_code) == previous_error and hard_decline(
        code=code, decline_code=decline_code
    )


def invoice_changed(
    *,
    invoice: Invoice,
    previous_status: str,
    previous_attempts: int,
    previous_dispute_status: str | None = None,
    previous_error: tuple[str, str] = ("", ""),
    repaid: bool = False,
    previous_finalization_error: str | None = None,
) -> None:
    """Called by `invoice_sync` (in its transaction) after the local copy moved forward. A new
    failed attempt on a seat invoice emails the billing contacts and, by the rule of
    `grace_reason`, starts grace; a payment waiting for the payer's bank (3-D Secure) is not a
    failure: they get the link to confirm it. A seat invoice charged back (a dispute lost) starts
    grace at once. A seat invoice settled (paid, voided, repaid) restores the organization once
    nothing else is overdue. A seat invoice the gateway could not finalize is a failed attempt
    that nobody will retry until its reason (the billing address) is fixed: the billing contacts
    are told why. Credit purchases and auto top-ups never touch the lifecycle."""
    organization = invoice.billing_profile.organization
    if organization is None or invoice.kind not in selectors.LIFECYCLE_KINDS:
        return
    unpaid = invoice.status in (Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE)
    failed = invoice.attempt_count > previous_attempts and unpaid
    charged_back = (
        previous_dispute_status is not None
        and invoice.charged_back
        and previous_dispute_status != "lost"
    )
    settled = (
        (
            invoice.status != previous_status
            and invoice.status in (Invoice.Status.PAID, Invoice.Status.VOID)
        )
        or repaid
        or (previous_dispute_status == "lost" and invoice.dispute_status != "lost")
    )
    not_finalized = (
        previous_finalization_error is not None
        and invoice.not_finalized
        and not previous_finalization_error
    )
    if not_finalized:
        _finalization_failed(organization, invoice)
    elif charged_back:
        reason = f"the payment of invoice {invoice.display_number} was charged back"
        grace = organization_grace_start(organization=organization, invoice=invoice, reason=reason)
        organization.refresh_from_db()
        email_lifecycle(
            organization,
            f"Payment taken back for {organization.name}: invoice {invoice.display_number}",
            "billing_charged_back.txt",
            invoice=invoice,
            grace_started=grace is not None,
        )
    elif failed and invoice.awaiting_authentication:
        if invoice.kind == Invoice.Kind.SEAT_SUBSCRIPTION:
            # Off-session (a renewal): the payer is not there; they get the link instead.
            email_lifecycle(
                organization,
                f"Confirm the payment for {organization.name} with your bank",
                "billing_authentication_required.txt",
                invoice=invoice,
            )
    elif failed and previous_attempts and _declined_for_good(invoice, previous_error):
        # A retry Stripe counted but did not make: the card that was declined for good is still
        # the one on file. Grace started at the first decline, whose email said so.
        return
    elif failed:
        grace = None
        if reason := grace_reason(invoice):
            grace = organization_grace_start(
                organization=organization, invoice=invoice, reason=reason
            )
        organization.refresh_from_db()
        email_lifecycle(
            organization,
            f"Payment failed for {organization.name}: invoice {invoice.display_number}",
            "billing_payment_failed.txt",
            invoice=invoice,
            grace_started=grace is not None,
        )
    elif (
        settled
        and organization.billing_state in (State.GRACE, State.SUSPENDED)
        and not selectors.overdue_invoices(organization=organization).exists()
    ):
        verb = {"paid": "paid", "void": "voided"}.get(invoice.status, "settled")
        if repaid:
            verb = "repaid"
        organization_restore(
            organization=organization,
            reason=f"invoice {invoice.display_number} {verb}",
            invoice=invoice,
        )
