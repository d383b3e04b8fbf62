from typing import Any

from django.http import HttpRequest

from organizations.selectors import memberships_of_user


def profiles(request: HttpRequest) -> dict[str, Any]:
    """The profile switcher: Personal plus every organization of the user, with the role. It
    shows the profile of the page: the organization of an organization's page, Personal on the
    personal pages (under /profile/), elsewhere the profile the user chose last."""
    if not request.user.is_authenticated:
        return {}
    memberships = list(memberships_of_user(user=request.user))
    match = request.resolver_match
    if match is not None and "org_id" in match.kwargs:
        shown_id = match.kwargs["org_id"]
    elif request.path.startswith("/profile/"):
        shown_id = None
    else:
        shown_id = request.user.active_organization_id
    active = next((m for m in memberships if m.organization_id == shown_id), None)
    return {"profile_memberships": memberships, "active_profile": active}
