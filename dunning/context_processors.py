from typing import Any

from django.http import HttpRequest

from dunning.selectors import memberships_in_dunning
from organizations.roles import Permission, allows


def billing_lifecycle(request: HttpRequest) -> dict[str, Any]:
    """The lifecycle banners of every page: one per organization of the user that is in grace
    (amber, with the deadline and "pay now") or suspended (red). One query, none when logged out."""
    if not request.user.is_authenticated:
        return {}
    banners = [
        {
            "organization": membership.organization,
            "can_pay": allows(membership.role, Permission.MANAGE_BILLING),
        }
        for membership in memberships_in_dunning(user=request.user)
    ]
    return {"billing_banners": banners}
