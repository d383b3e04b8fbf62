"""Reads about the lifecycle, always scoped to one organization (or one user)."""

from uuid import UUID

from django.db.models import QuerySet

from accounts.models import User
from dunning.models import LifecycleTransition
from organizations.models import Membership, Organization


def lifecycle_transitions(*, organization: Organization) -> QuerySet[LifecycleTransition]:
    """The timeline, newest first."""
    return (
        LifecycleTransition.objects.filter(organization=organization)
        .select_related("invoice", "actor")
        .order_by("-created_at", "-pk")
    )


def membership_in_dunning(*, user: User, org_id: UUID | str) -> Membership | None:
    """The user's membership of org_id if that organization is in grace or suspension: the
    banner on its pages."""
    return (
        Membership.objects.filter(
            user=user,
            organization_id=org_id,
            organization__billing_state__in=[
                Organization.BillingState.GRACE,
                Organization.BillingState.SUSPENDED,
            ],
        )
        .select_related("organization")
        .first()
    )
