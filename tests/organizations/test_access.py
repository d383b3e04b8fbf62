"""Every organization page: allowed roles 200, other roles 403, outsiders 404, anonymous log in."""

import pytest
from django.urls import reverse

from organizations.models import Membership
from organizations.roles import Role
from tests.conftest import World, client_for

ALL = {Role.OWNER, Role.ADMIN, Role.BILLING_MANAGER, Role.MEMBER}
BILLING = {Role.OWNER, Role.ADMIN, Role.BILLING_MANAGER}
TEAM = {Role.OWNER, Role.ADMIN}

PAGES = [
    ("org_overview", ALL),
    ("org_credits", BILLING),
    ("org_seats", BILLING),
    ("org_invoices", BILLING),
    ("org_usage", ALL),
    ("org_members", ALL),
    ("org_leave", ALL),
    ("org_settings", TEAM),
    ("org_audit", TEAM),
    ("org_delete", {Role.OWNER}),
    ("org_member_remove", TEAM),
]


def page_url(name: str, world: World) -> str:
    kwargs: dict[str, object] = {"org_id": world.org.pk}
    if name == "org_member_remove":
        kwargs["membership_id"] = Membership.objects.get(user=world.member).pk
    return reverse(name, kwargs=kwargs)


@pytest.mark.parametrize(("name", "allowed"), PAGES)
@pytest.mark.parametrize("role", list(Role))
def test_it_answers_each_role_by_the_matrix(
    world: World, name: str, allowed: set[str], role: str
) -> None:
    response = client_for(world.person(role)).get(page_url(name, world))
    assert response.status_code == (200 if role in allowed else 403)


@pytest.mark.parametrize(("name", "allowed"), PAGES)
def test_it_hides_every_page_from_outsiders(world: World, name: str, allowed: set[str]) -> None:
    response = client_for(world.outsider).get(page_url(name, world))
    assert response.status_code == 404


@pytest.mark.parametrize(("name", "allowed"), PAGES)
def test_it_sends_anonymous_visitors_to_log_in(world: World, name: str, allowed: set[str]) -> None:
    url = page_url(name, world)
    response = client_for(None).get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize(
    ("name", "allowed", "data"),
    [
        ("org_invite", BILLING, {"email": "new@acme.test", "role": Role.MEMBER}),
        ("org_member_role", TEAM, {"role": Role.MEMBER}),
    ],
)
@pytest.mark.parametrize("role", [*Role, "outsider"])
def test_it_guards_team_actions(
    world: World, name: str, allowed: set[str], data: dict[str, str], role: str
) -> None:
    kwargs: dict[str, object] = {"org_id": world.org.pk}
    if name == "org_member_role":
        kwargs["membership_id"] = Membership.objects.get(user=world.member).pk
    response = client_for(world.person(role)).post(reverse(name, kwargs=kwargs), data)
    if role == "outsider":
        assert response.status_code == 404
    elif role in allowed:
        assert response.status_code == 302
    else:
        assert response.status_code == 403


def test_it_404s_for_a_neighbours_membership_in_our_url(world: World) -> None:
    neighbours_membership = Membership.objects.get(user=world.outsider)
    url = reverse(
        "org_member_remove",
        kwargs={"org_id": world.org.pk, "membership_id": neighbours_membership.pk},
    )
    response = client_for(world.owner).post(url)
    assert response.status_code == 404
    assert Membership.objects.filter(pk=neighbours_membership.pk).exists()


def test_it_404s_for_an_unknown_organization(world: World) -> None:
    url = reverse("org_overview", kwargs={"org_id": "00000000-0000-0000-0000-000000000000"})
    assert client_for(world.owner).get(url).status_code == 404
