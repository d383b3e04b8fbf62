"""The lifecycle's periodic work: reminders and suspension when grace ends, deletion notices and
the retention purge. Each reads only the organizations in grace or suspension (partial indexes)."""

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from billing.clock import billing_now
from dunning.closing import organization_purge
from dunning.lifecycle import (
    State,
    email_lifecycle,
    organization_grace_start,
    organization_suspend,
)
from dunning.wording import duration_text
from invoices import selectors
from invoices.models import Invoice
from organizations.models import Organization

logger = logging.getLogger(__name__)

GRACE_REMINDER_BEFORE = timedelta(hours=24)
DELETION_NOTICE_DAYS = (7, 1)
SWEEP_BATCH = 1000


def _each(items: Iterable[Any], work: Any) -> tuple[int, int]:
    """Run `work` per item (an organization, an invoice) in its own transaction; one failure
    does not stop the rest."""
    done = failed = 0
    for item in items:
        try:
            if work(item):
                done += 1
        except Exception:
            failed += 1
            logger.exception("billing sweep failed for %s %s", type(item).__name__, item.pk)
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
            assert organization.grace_ends_at is not None
            left = duration_text(organization.grace_ends_at - now)
            email_lifecycle(
                organization,
                f"{organization.name} will be suspended in {left}",
                "billing_grace_reminder.txt",
                deadline=organization.grace_ends_at,
                time_left=left,
                overdue=list(selectors.overdue_invoices(organization=organization)),
            )
    return bool(claimed)


def _overdue_grace(invoice: Invoice, now: datetime) -> bool:
    """A renewal unpaid for a week starts grace, whatever its attempts say (Stripe may have
    stopped retrying it, or it waits for the payer's bank)."""
    organization = invoice.billing_profile.organization
    assert organization is not None
    with transaction.atomic():
        grace = organization_grace_start(
            organization=organization,
            invoice=invoice,
            now=now,
            reason=f"invoice {invoice.display_number} overdue for "
            f"{settings.BILLING_OVERDUE_DAYS_BEFORE_GRACE} days",
        )
        if grace is not None:
            email_lifecycle(
                organization,
                f"{organization.name} is in a grace period: invoice {invoice.display_number} "
                "is overdue",
                "billing_grace_started.txt",
                invoice=invoice,
                reason=grace.reason,
            )
    return grace is not None


def dunning_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Every 5 minutes: grace for renewals a week overdue; the reminder within 24 hours of
    grace's end (stating the time really left), then suspension when it has ended unpaid. Reads
    only organizations in grace and invoices unpaid after a failure, through partial indexes."""
    now = now or billing_now()
    long_overdue = (
        Invoice.objects.filter(
            kind=Invoice.Kind.SEAT_SUBSCRIPTION,
            # Drafts have first_failed_at only when the gateway holds them (invoices.services).
            status__in=[Invoice.Status.DRAFT, Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE],
            first_failed_at__isnull=False,
            first_failed_at__lte=now - timedelta(days=settings.BILLING_OVERDUE_DAYS_BEFORE_GRACE),
            amount_remaining__gt=0,
            billing_profile__organization__billing_state=State.ACTIVE,
        )
        .select_related("billing_profile__organization")
        .order_by("first_failed_at")[:SWEEP_BATCH]
    )
    graced, failed_overdue = _each(long_overdue, lambda invoice: _overdue_grace(invoice, now))
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
    return {
        "graced": graced,
        "reminded": reminded,
        "suspended": suspended,
        "failed": failed + failed_reminders + failed_overdue,
    }


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
                retention_scheduled=True,
            )
            .filter(Q(deletion_notice_days__isnull=True) | Q(deletion_notice_days__gt=days))
            .update(deletion_notice_days=days)
        )
        if claimed:
            email_lifecycle(
                organization,
                f"{organization.name}'s data will be deleted in {days} "
                f"day{'s' if days != 1 else ''}",
                "billing_deletion_warning.txt",
                days=days,
                deletion_at=deletion_at,
                overdue=list(selectors.overdue_invoices(organization=organization)),
            )
    return bool(claimed)


def retention_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Hourly: the notices 7 days and 1 day before deletion, then the purge of organizations
    suspended for BILLING_RETENTION_PERIOD. Reads only suspended organizations (partial index)."""
    now = now or billing_now()
    retention = settings.BILLING_RETENTION_PERIOD
    # A staff suspension without the countdown is never noticed nor purged by time.
    suspended = Organization.objects.filter(billing_state=State.SUSPENDED, retention_scheduled=True)
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
    purged, failed = _each(
        due[:SWEEP_BATCH], lambda org: organization_purge(organization=org, now=now)
    )
    return {"warned": warned, "purged": purged, "failed": failed + failed_notices}
