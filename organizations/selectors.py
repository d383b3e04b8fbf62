"""Reads, always scoped to one organization or one user."""

from django.db.models import QuerySet

from accounts.models import User
from organizations.models import AuditEvent, Invitation, Membership, Organization
from organizations.roles import Role


def memberships_of_user(*, user: User) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(user=user)
        .select_related("organization")
        .order_by("organization__name")
    )


def members_of_organization(*, organization: Organization) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(organization=organization)
        .select_related("user")
        .order_by("role", "user__email")
    )


def is_last_owner(*, membership: Membership) -> bool:
    """The last owner cannot leave, be demoted or be removed: the organization keeps one."""
    return (
        membership.role == Role.OWNER
        and not Membership.objects.filter(
            organization_id=membership.organization_id, role=Role.OWNER
        )
        .exclude(pk=membership.pk)
        .exists()
    )


def open_invitations(*, organization: Organization) -> QuerySet[Invitation]:
    """Invitations not yet accepted or revoked, expired ones included so they can be resent."""
    return Invitation.objects.open().filter(organization=organization).order_by("-created_at")


def audit_events(*, organization: Organization) -> QuerySet[AuditEvent]:
    return (
        AuditEvent.objects.filter(organization=organization)
        .select_related("actor")
        .order_by("-created_at", "-pk")
    )
