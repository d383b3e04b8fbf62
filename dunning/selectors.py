"""Reads about the lifecycle, always scoped to one organization (or one user)."""

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


def memberships_in_dunning(*, user: User) -> QuerySet[Membership]:
    """The user's organizations in grace or suspension: the banners on every page."""
    return (
        Membership.objects.filter(
            user=user,
            organization__billing_state__in=[
                Organization.BillingState.GRACE,
                Organization.BillingState.SUSPENDED,
            ],
        )
        .select_related("organization")
        .order_by("organization__name")
    )
