"""The one door into an organization. Every organization page and API call comes through here."""

from uuid import UUID

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest

from organizations.models import Membership
from organizations.roles import Permission, allows


def membership_for(
    request: HttpRequest,
    org_id: UUID | str,
    *,
    permission: Permission = Permission.VIEW_ORGANIZATION,
) -> Membership:
    """The caller's membership of org_id. Outsiders get 404, roles without `permission` 403."""
    membership = (
        Membership.objects.select_related("organization", "user")
        .filter(organization_id=org_id, user_id=request.user.pk or 0)
        .first()
    )
    if membership is None:
        raise Http404("No such organization.")
    if not allows(membership.role, permission):
        raise PermissionDenied
    return membership


def require(membership: Membership, permission: Permission) -> None:
    """A second check inside a page, for actions whose permission depends on the target."""
    if not allows(membership.role, permission):
        raise PermissionDenied
