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
from billing.notify import email_after_commit, email_billing_contacts
from billing.selectors import billing_contacts
from invoices import selectors
from invoices.exceptions import LifecycleError
from invoices.models import Invoice, LifecycleTransition
from organizations.models import Invitation, Membership, Organization
from organizations.services import audit_record

logger = logging.getLogger(__name__)

State = Organization.BillingState

# Which moves exist. grace → grace is staff extending the deadline; suspended → grace is staff
# giving a suspended organization more time.
ALLOWED: dict[str, frozenset[str]] = {
    State.ACTIVE: frozenset({State.GRACE, State.SUSPENDED}),
    State.GRACE: frozenset({State.ACTIVE, State.GRACE, State.SUSPENDED}),
    State.SUSPENDED: frozenset({State.ACTIVE, State.GRACE, State.DELETED}),
    State.DELETED: frozenset(),
}

GRACE_REMINDER_BEFORE = timedelta(hours=24)
DELETION_NOTICE_DAYS = (7, 1)
SWEEP_BATCH = 1000


def _link(name: str, organization: Organization) -> str:
    return settings.SITE_URL + reverse(name, kwargs={"org_id": organization.pk})


def _email(organization: Organization, subject: str, template: str, **context: Any) -> None:
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


def _transition(
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
    *, organization: Organization, invoice: Invoice, now: datetime | None = None
) -> LifecycleTransition | None:
    """Repeated failure on a seat invoice: active → grace until now + BILLING_GRACE_PERIOD."""
    now = now or billing_now()
    return _transition(
        organization=organization,
        to_state=State.GRACE,
        action="billing.grace_start",
        reason=f"{invoice.attempt_count} failed payment attempts on invoice "
        f"{invoice.display_number}",
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
    transition = _transition(
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
) -> LifecycleTransition | None:
    """Grace ended unpaid (the sweep, `due_only`) or staff said so: → suspended. Nothing is
    deleted; the API refuses and only billing pages stay open."""
    now = now or billing_now()
    overdue = list(selectors.overdue_invoices(organization=organization))
    transition = _transition(
        organization=organization,
        to_state=State.SUSPENDED,
        action="billing.suspend",
        reason=reason,
        now=now,
        allowed_from={State.GRACE} if due_only else {State.ACTIVE, State.GRACE},
        actor=actor,
        invoice=overdue[0] if overdue else None,
        where=Q(grace_ends_at__lte=now) if due_only else None,
    )
    if transition is not None:
        _email(
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
    transition = _transition(
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
        _email(
            organization,
            f"{organization.name} is active again",
            "billing_restored.txt",
            reason=reason,
        )
    return transition


def _credits_purge() -> Any:
    try:
        from credits.services import organization_credits_purge
    except ImportError:  # the credits app has no accounts yet: nothing to forfeit
        return None
    return organization_credits_purge


@transaction.atomic
def organization_purge(
    *, organization: Organization, now: datetime | None = None
) -> LifecycleTransition | None:
    """Suspended for BILLING_RETENTION_PERIOD: delete the organization's data — team, invitations,
    credits and usage (the balance forfeited with a ledger entry) — and keep what accounting
    needs: the organization row as a tombstone (name, dates, state `deleted`), its invoices and
    billing profile, the ledger, the transition log and the audit trail. Safe to run twice."""
    now = now or billing_now()
    recipients = billing_contacts(organization)
    reason = f"suspended for {settings.BILLING_RETENTION_PERIOD.days} days without payment"
    transition = _transition(
        organization=organization,
        to_state=State.DELETED,
        action="billing.purge",
        reason=reason,
        now=now,
        allowed_from={State.SUSPENDED},
        where=Q(suspended_at__lte=now - settings.BILLING_RETENTION_PERIOD),
    )
    if transition is None:
        return None
    purge_credits = _credits_purge()
    if purge_credits is not None:
        purge_credits(organization=organization, reason=reason)
    memberships, _ = Membership.objects.filter(organization=organization).delete()
    invitations, _ = Invitation.objects.filter(organization=organization).delete()
    User.objects.filter(active_organization=organization).update(active_organization=None)
    transition.details = {"memberships": memberships, "invitations": invitations}
    transition.save(update_fields=["details"])
    email_after_commit(
        recipients=recipients,
        subject=f"{organization.name}'s data has been deleted",
        template="emails/billing_deleted.txt",
        context={"organization": organization, "reason": reason},
    )
    return transition


# Reactions to invoices


def invoice_changed(*, invoice: Invoice, previous_status: str, previous_attempts: int) -> None:
    """Called by `invoice_sync` (in its transaction) after the local copy moved forward. A new
    failed attempt on a seat invoice emails the billing contacts and, at the threshold, starts
    grace; a seat invoice settled (paid or voided) restores the organization once nothing else
    is overdue. Credit purchases and auto top-ups never touch the lifecycle."""
    organization = invoice.billing_profile.organization
    if organization is None or invoice.kind not in selectors.LIFECYCLE_KINDS:
        return
    failed = invoice.attempt_count > previous_attempts and invoice.status in (
        Invoice.Status.OPEN,
        Invoice.Status.UNCOLLECTIBLE,
    )
    settled = invoice.status != previous_status and invoice.status in (
        Invoice.Status.PAID,
        Invoice.Status.VOID,
    )
    if failed:
        grace = None
        if invoice.attempt_count >= settings.BILLING_FAILED_ATTEMPTS_BEFORE_GRACE:
            grace = organization_grace_start(organization=organization, invoice=invoice)
        organization.refresh_from_db()
        _email(
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
        verb = "paid" if invoice.status == Invoice.Status.PAID else "voided"
        organization_restore(
            organization=organization,
            reason=f"invoice {invoice.display_number} {verb}",
            invoice=invoice,
        )


# The sweeps


def _each(organizations: Iterable[Organization], work: Any) -> tuple[int, int]:
    """Run `work` per organization in its own transaction; one failure does not stop the rest."""
    done = failed = 0
    for organization in organizations:
        try:
            if work(organization):
                done += 1
        except Exception:
            failed += 1
            logger.exception("billing sweep failed for organization %s", organization.pk)
    return done, failed


def _grace_remind(organization: Organization, now: datetime) -> bool:
    with transaction.atomic():
        claimed = Organization.objects.filter(
            pk=organization.pk,
            billing_state=State.GRACE,
            grace_ends_at=organization.grace_ends_at,
            grace_reminder_sent_at__isnull=True,
        ).update(grace_reminder_sent_at=now)
        if claimed:
            _email(
                organization,
                f"{organization.name} will be suspended in 24 hours",
                "billing_grace_reminder.txt",
                deadline=organization.grace_ends_at,
                overdue=list(selectors.overdue_invoices(organization=organization)),
            )
    return bool(claimed)


def dunning_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Every 5 minutes: the reminder 24 hours before grace ends, then suspension when it has
    ended unpaid. Reads only organizations in grace, through the partial index."""
    now = now or billing_now()
    in_grace = Organization.objects.filter(billing_state=State.GRACE)
    reminders = in_grace.filter(
        grace_ends_at__lte=now + GRACE_REMINDER_BEFORE,
        grace_ends_at__gt=now,
        grace_reminder_sent_at__isnull=True,
    ).order_by("grace_ends_at")[:SWEEP_BATCH]
    reminded, failed_reminders = _each(reminders, lambda org: _grace_remind(org, now))
    due = in_grace.filter(grace_ends_at__lte=now).order_by("grace_ends_at")[:SWEEP_BATCH]
    suspended, failed = _each(
        due,
        lambda org: organization_suspend(
            organization=org,
            reason="grace period ended without payment",
            now=now,
            due_only=True,
        ),
    )
    return {"reminded": reminded, "suspended": suspended, "failed": failed + failed_reminders}


def _deletion_notice(organization: Organization, now: datetime) -> bool:
    deletion_at = organization.deletion_due_at
    assert deletion_at is not None
    retention = settings.BILLING_RETENTION_PERIOD
    due = [
        days
        for days in DELETION_NOTICE_DAYS
        if timedelta(days=days) < retention and deletion_at - timedelta(days=days) <= now
    ]
    if not due:
        return False
    days = min(due)
    with transaction.atomic():
        claimed = (
            Organization.objects.filter(
                pk=organization.pk,
                billing_state=State.SUSPENDED,
                suspended_at=organization.suspended_at,
            )
            .filter(Q(deletion_notice_days__isnull=True) | Q(deletion_notice_days__gt=days))
            .update(deletion_notice_days=days)
        )
        if claimed:
            _email(
                organization,
                f"{organization.name}'s data will be deleted in {days} "
                f"day{'s' if days != 1 else ''}",
                "billing_deletion_warning.txt",
                days=days,
                deletion_at=deletion_at,
                overdue=list(selectors.overdue_invoices(organization=organization)),
            )
    return bool(claimed)


def _purge(organization: Organization, now: datetime) -> LifecycleTransition | None:
    """Purge, then end the seat subscription at the gateway (outside the purge's transaction):
    a deleted organization is charged no more."""
    from seats.services import seats_end_with_organization

    transition = organization_purge(organization=organization, now=now)
    if transition is not None:
        seats_end_with_organization(actor=None, organization=organization)
    return transition


def retention_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Hourly: the notices 7 days and 1 day before deletion, then the purge of organizations
    suspended for BILLING_RETENTION_PERIOD. Reads only suspended organizations (partial index)."""
    now = now or billing_now()
    retention = settings.BILLING_RETENTION_PERIOD
    suspended = Organization.objects.filter(billing_state=State.SUSPENDED)
    first_notice = max(DELETION_NOTICE_DAYS)
    noticeable = (
        suspended.filter(
            suspended_at__lte=now - retention + timedelta(days=first_notice),
            suspended_at__gt=now - retention,
        )
        .filter(Q(deletion_notice_days__isnull=True) | Q(deletion_notice_days__gt=1))
        .order_by("suspended_at")[:SWEEP_BATCH]
    )
    warned, failed_notices = _each(noticeable, lambda org: _deletion_notice(org, now))
    due = suspended.filter(suspended_at__lte=now - retention).order_by("suspended_at")
    purged, failed = _each(due[:SWEEP_BATCH], lambda org: _purge(org, now))
    return {"warned": warned, "purged": purged, "failed": failed + failed_notices}
