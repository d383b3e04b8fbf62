"""The one way an organization ends: deleted by its owner, or purged after
BILLING_RETENTION_PERIOD suspended without payment.

Either way the organization row stays as a tombstone (name, dates, state `deleted`; 404 for
everyone) with what accounting needs: its billing profile and invoices, the ledger with the
credit balance frozen on it (prepaid money is never forfeited by a job: only staff refund or
write it off, with a reason), the lifecycle timeline and the audit trail. Each app's step below
deletes what it keeps about the team and its usage, inside the closing transaction. The seat
subscription then ends at the gateway with the period already paid, so nothing is charged again.
"""

import logging
from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from accounts.models import User
from analytics.services import organization_usage_delete
from billing.clock import billing_now
from billing.notify import email_after_commit
from billing.selectors import billing_contacts
from credits.services import organization_credits_freeze
from dunning.lifecycle import State, transition_claim
from dunning.models import FormerBillingContact, LifecycleTransition
from organizations.models import Membership, Organization
from organizations.roles import Role
from organizations.services import organization_team_remove
from payments.gateway import GatewayError
from seats.services import seats_end_with_organization

logger = logging.getLogger(__name__)


def former_billing_contacts_keep(*, organization: Organization) -> dict[str, int]:
    """Before the team goes: who may still read the invoices (owners and billing managers)."""
    contacts = [
        FormerBillingContact(organization=organization, user_id=user_id, role=role)
        for user_id, role in Membership.objects.filter(
            organization=organization, role__in=[Role.OWNER, Role.BILLING_MANAGER]
        ).values_list("user_id", "role")
    ]
    FormerBillingContact.objects.bulk_create(contacts, ignore_conflicts=True)
    return {"former_billing_contacts": len(contacts)}


# What each app deletes (and keeps) of a closing organization, in order, inside one transaction.
# Each returns counts for the timeline.
CLOSING_STEPS: tuple[Callable[..., dict[str, int]], ...] = (
    former_billing_contacts_keep,
    organization_credits_freeze,
    organization_usage_delete,
    organization_team_remove,
)


def organization_close(
    *,
    organization: Organization,
    reason: str,
    action: str,
    actor: User | None = None,
    allowed_from: frozenset[str] = frozenset({State.ACTIVE, State.GRACE, State.SUSPENDED}),
    where: Q | None = None,
    now: datetime | None = None,
) -> LifecycleTransition | None:
    """Close the organization once (a conditional move to `deleted`); None when it is not in a
    state it may close from, or another worker closed it first. Call it outside a transaction:
    the gateway is told after the commit."""
    now = now or billing_now()
    with transaction.atomic():
        recipients = billing_contacts(organization)
        transition = transition_claim(
            organization=organization,
            to_state=State.DELETED,
            action=action,
            reason=reason,
            now=now,
            allowed_from=allowed_from,
            actor=actor,
            where=where,
        )
        if transition is None:
            return None
        details: dict[str, int] = {}
        for step in CLOSING_STEPS:
            details.update(step(organization=organization))
        transition.details = {**transition.details, **details}
        transition.save(update_fields=["details"])
        email_after_commit(
            recipients=recipients,
            subject=f"{organization.name}'s data has been deleted",
            template="emails/billing_deleted.txt",
            context={"organization": organization, "reason": reason},
        )
    try:
        seats_end_with_organization(actor=actor, organization=organization)
    except GatewayError:
        # The daily seat resync ends it later (it cancels live seats of closed organizations).
        logger.exception("could not end the seats of closed organization %s", organization.pk)
    return transition


def organization_delete(*, organization: Organization, actor: User) -> LifecycleTransition | None:
    """The owner deletes the organization (the Settings tab, after typing its name)."""
    return organization_close(
        organization=organization,
        reason=f"deleted by its owner {actor.email}",
        action="organization.delete",
        actor=actor,
    )


def organization_purge(
    *, organization: Organization, now: datetime | None = None
) -> LifecycleTransition | None:
    """Retention: suspended for BILLING_RETENTION_PERIOD without payment. Safe to run twice."""
    now = now or billing_now()
    return organization_close(
        organization=organization,
        reason=f"suspended for {settings.BILLING_RETENTION_PERIOD.days} days without payment",
        action="billing.purge",
        allowed_from=frozenset({State.SUSPENDED}),
        where=Q(
            suspended_at__lte=now - settings.BILLING_RETENTION_PERIOD, retention_scheduled=True
        ),
        now=now,
    )
