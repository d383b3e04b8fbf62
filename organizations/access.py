"""The one door into an organization. Every organization page and API call comes through here."""

from typing import TYPE_CHECKING
from uuid import UUID

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest

from organizations.models import Membership, Organization
from organizations.roles import Permission, allows

if TYPE_CHECKING:
    from accounts.models import User


class OrganizationSuspended(PermissionDenied):
    """The organization is suspended for non-payment and this page is not a billing page.

    A PermissionDenied, so Django answers with its 403 page; `membership_for` also leaves the
    membership on the request (`request.suspended_membership`), from which the base layout
    renders the suspension page instead. The API, which answers 402 instead, can catch this or
    pass `allow_suspended=True` and look at `membership.organization.billing_state` itself."""

    def __init__(self, membership: Membership) -> None:
        super().__init__("organization_suspended")
        self.membership = membership


def membership_for(
    request: HttpRequest,
    org_id: UUID | str,
    *,
    permission: Permission = Permission.VIEW_ORGANIZATION,
    allow_suspended: bool = False,
) -> Membership:
    """The caller's membership of org_id. Outsiders get 404, roles without `permission` 403.
    While the organization is suspended only pages that pass `allow_suspended` (billing: pay
    now, payment method, invoices, billing details) open; the rest raise OrganizationSuspended."""
    membership = (
        Membership.objects.select_related("organization", "user")
        .filter(organization_id=org_id, user_id=request.user.pk or 0)
        .first()
    )
    if membership is None or membership.organization.billing_state == (
        Organization.BillingState.DELETED
    ):
        raise Http404("No such organization.")
    if not allows(membership.role, permission):
        raise PermissionDenied
    if membership.organization.is_suspended and not allow_suspended:
        setattr(request, "suspended_membership", membership)  # noqa: B010 - not a declared attribute
        raise OrganizationSuspended(membership)
    return membership


def api_membership_for(*, user: "User", org_id: UUID | str) -> Membership | None:
    """The API's door: the user's membership of org_id, or None for outsiders and deleted
    organizations. Suspension is not refused here: the API answers it with its own 402."""
    return (
        Membership.objects.select_related("organization")
        .filter(organization_id=org_id, user_id=user.pk)
        .exclude(organization__billing_state=Organization.BillingState.DELETED)
        .first()
    )
