from typing import Any

from django.http import HttpRequest

from dunning.selectors import membership_in_dunning
from invoices.selectors import overdue_invoices
from organizations.roles import Permission, allows


def billing_lifecycle(request: HttpRequest) -> dict[str, Any]:
    """The lifecycle banner of the organization a page belongs to (the `org_id` of its URL), if
    it is in grace (amber, with the deadline and "pay now") or suspended (red). Another
    organization's trouble shows in that organization only; the profile page lists each
    organization's state. One query on organization pages, none elsewhere."""
    match = getattr(request, "resolver_match", None)
    org_id = match.kwargs.get("org_id") if match is not None else None
    if not request.user.is_authenticated or org_id is None:
        return {}
    membership = membership_in_dunning(user=request.user, org_id=org_id)
    if membership is None:
        return {}
    organization = membership.organization
    banner = {
        "organization": organization,
        "can_pay": allows(membership.role, Permission.MANAGE_BILLING),
        # A staff suspension may owe nothing: then there is no "pay now" to offer.
        "owes": not organization.suspended_by_staff
        or overdue_invoices(organization=organization).exists(),
    }
    return {"billing_banners": [banner]}
