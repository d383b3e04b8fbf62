from typing import Any

from django.http import HttpRequest

from organizations.selectors import memberships_of_user


def profiles(request: HttpRequest) -> dict[str, Any]:
    """The profile switcher: Personal plus every organization of the user, with the role."""
    if not request.user.is_authenticated:
        return {}
    memberships = list(memberships_of_user(user=request.user))
    active_id = request.user.active_organization_id
    active = next((m for m in memberships if m.organization_id == active_id), None)
    return {"profile_memberships": memberships, "active_profile": active}
