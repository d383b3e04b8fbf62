import pytest
from django.urls import reverse

from accounts.models import User
from organizations.models import AuditEvent, Membership, Organization
from organizations.roles import Role
from tests.conftest import World, client_for


def membership(user: User) -> Membership:
    return Membership.objects.get(user=user)


def change_role(world: World, actor: User, target: User, role: str):  # type: ignore[no-untyped-def]
    return client_for(actor).post(
        reverse("org_member_role", args=[world.org.pk, membership(target).pk]),
        {"role": role},
        follow=True,
    )


def test_an_admin_changes_a_members_role(world: World) -> None:
    change_role(world, world.admin, world.member, Role.BILLING_MANAGER)
    assert membership(world.member).role == Role.BILLING_MANAGER
    event = AuditEvent.objects.get(action="membership.change_role")
    assert event.details == {"old_role": "member", "role": "billing_manager"}


def test_nobody_changes_their_own_role(world: World) -> None:
    response = change_role(world, world.owner, world.owner, Role.MEMBER)
    assert "cannot change your own role" in response.content.decode()
    assert membership(world.owner).role == Role.OWNER


def test_admins_cannot_touch_owners(world: World) -> None:
    assert change_role(world, world.admin, world.owner, Role.MEMBER).status_code == 403
    assert change_role(world, world.admin, world.member, Role.OWNER).status_code == 403
    assert membership(world.owner).role == Role.OWNER
    assert membership(world.member).role == Role.MEMBER


def test_the_last_owner_cannot_be_demoted_removed_or_leave(world: World) -> None:
    second = world.admin
    change_role(world, world.owner, second, Role.OWNER)
    assert membership(second).role == Role.OWNER
    # Two owners: one may demote the other, leaving one, who then cannot be demoted.
    change_role(world, world.owner, second, Role.ADMIN)
    assert membership(second).role == Role.ADMIN
    response = client_for(world.owner).post(reverse("org_leave", args=[world.org.pk]), follow=True)
    assert "last owner" in response.content.decode()
    assert Membership.objects.filter(user=world.owner, organization=world.org).exists()


def test_an_owner_removes_another_owner_but_not_the_last(world: World) -> None:
    change_role(world, world.owner, world.admin, Role.OWNER)
    client_for(world.admin).post(
        reverse("org_member_remove", args=[world.org.pk, membership(world.owner).pk])
    )
    assert not Membership.objects.filter(user=world.owner).exists()
    response = client_for(world.admin).post(
        reverse("org_member_remove", args=[world.org.pk, membership(world.admin).pk]), follow=True
    )
    assert "cannot remove yourself" in response.content.decode()
    assert Membership.objects.filter(user=world.admin, role=Role.OWNER).exists()


def test_removing_a_member_revokes_access_at_once(world: World) -> None:
    client_for(world.admin).post(
        reverse("org_member_remove", args=[world.org.pk, membership(world.member).pk])
    )
    assert not Membership.objects.filter(user=world.member).exists()
    assert (
        client_for(world.member).get(reverse("org_overview", args=[world.org.pk])).status_code
        == 404
    )
    assert (
        AuditEvent.objects.filter(action="membership.remove", target=world.member.email).count()
        == 1
    )


def test_a_member_leaves(world: World) -> None:
    response = client_for(world.member).post(reverse("org_leave", args=[world.org.pk]))
    assert response.status_code == 302
    assert not Membership.objects.filter(user=world.member).exists()
    assert AuditEvent.objects.filter(action="membership.leave", actor=world.member).exists()


def test_creating_an_organization_makes_the_creator_owner(world: World) -> None:
    client = client_for(world.member)
    response = client.post(reverse("org_create"), {"name": "Initech"})
    org = Organization.objects.get(name="Initech")
    assert response["Location"] == reverse("org_overview", args=[org.pk])
    assert Membership.objects.get(organization=org).role == Role.OWNER
    world.member.refresh_from_db()
    assert world.member.active_organization_id == org.pk


def test_renaming_is_audited(world: World) -> None:
    client_for(world.admin).post(reverse("org_settings", args=[world.org.pk]), {"name": "Acme 2"})
    world.org.refresh_from_db()
    assert world.org.name == "Acme 2"
    assert AuditEvent.objects.get(action="organization.rename").details == {
        "old_name": "Acme Robotics"
    }


def test_deleting_needs_the_name_typed(world: World) -> None:
    url = reverse("org_delete", args=[world.org.pk])
    response = client_for(world.owner).post(url, {"confirm_name": "acme"})
    assert "not the organization" in response.content.decode()
    assert Organization.objects.filter(pk=world.org.pk).exists()
    client_for(world.owner).post(url, {"confirm_name": "Acme Robotics"})
    # A tombstone stays (dunning.closing), deleted for everyone.
    tombstone = Organization.objects.get(pk=world.org.pk)
    assert tombstone.billing_state == Organization.BillingState.DELETED
    assert (
        client_for(world.owner).get(reverse("org_overview", args=[world.org.pk])).status_code == 404
    )
    assert not Membership.objects.filter(organization_id=world.org.pk).exists()
    event = AuditEvent.objects.get(action="organization.delete")
    assert (event.organization_id, event.actor) == (world.org.pk, world.owner)
    assert event.details["reason"] == "deleted by its owner owner@acme.test"
    assert Membership.objects.filter(organization=world.neighbour).exists()


def test_the_members_page_shows_the_permission_matrix(world: World) -> None:
    page = (
        client_for(world.member).get(reverse("org_members", args=[world.org.pk])).content.decode()
    )
    assert "Who may do what" in page
    assert "Invite, remove or change owners; delete the organization" in page
    assert world.billing.email in page
    assert "Send invitation" not in page  # members may not invite


@pytest.mark.parametrize("role", list(Role))
def test_the_switcher_lists_personal_and_every_organization(world: World, role: str) -> None:
    Membership.objects.create(
        organization=world.neighbour, user=world.person(role), role=Role.MEMBER
    )
    page = client_for(world.person(role)).get(reverse("personal_profile")).content.decode()
    assert ">Personal<" in page
    assert "Acme Robotics (" in page
    assert "Globex (Member)" in page


def test_switching_is_remembered_and_checked(world: World) -> None:
    client = client_for(world.member)
    response = client.post(reverse("profile_switch"), {"profile": str(world.org.pk)})
    assert response["Location"] == reverse("org_overview", args=[world.org.pk])
    world.member.refresh_from_db()
    assert world.member.active_organization_id == world.org.pk
    assert client.get(reverse("home"))["Location"] == reverse("org_overview", args=[world.org.pk])
    assert (
        client.post(reverse("profile_switch"), {"profile": str(world.neighbour.pk)}).status_code
        == 404
    )
    client.post(reverse("profile_switch"), {"profile": "personal"})
    world.member.refresh_from_db()
    assert world.member.active_organization_id is None
    assert client.get(reverse("home"))["Location"] == reverse("personal_profile")


def _switcher_shows(page: str) -> str:
    switcher = page.split('id="profile-select"')[1].split("</select>", maxsplit=1)[0]
    (selected,) = [o for o in switcher.split("<option")[1:] if " selected>" in o]
    return selected.split(">")[1].split("<")[0]


def test_the_switcher_shows_the_profile_of_the_page(world: World) -> None:
    """An organization's page never says "Personal" in the switcher, nor a personal page the
    organization chosen last; elsewhere it is the profile chosen last."""
    client = client_for(world.member)
    assert world.member.active_organization_id is None
    overview = client.get(reverse("org_overview", args=[world.org.pk])).content.decode()
    assert _switcher_shows(overview) == f"{world.org.name} (Member)"
    client.post(reverse("profile_switch"), {"profile": str(world.org.pk)})
    for name in ("personal_credits", "personal_usage", "personal_tokens"):
        assert _switcher_shows(client.get(reverse(name)).content.decode()) == "Personal"
    password = client.get(reverse("password_change")).content.decode()
    assert _switcher_shows(password) == f"{world.org.name} (Member)"


@pytest.mark.parametrize(
    ("role", "shown", "hidden"),
    [
        (Role.OWNER, ["Credits", "Seats", "Invoices", "Settings", "Audit log"], []),
        (Role.BILLING_MANAGER, ["Credits", "Seats", "Invoices"], ["Settings", "Audit log"]),
        (Role.MEMBER, ["Members", "Usage"], ["Credits", "Seats", "Invoices", "Settings"]),
    ],
)
def test_the_tabs_follow_the_matrix(
    world: World, role: str, shown: list[str], hidden: list[str]
) -> None:
    page = client_for(world.person(role)).get(reverse("org_overview", args=[world.org.pk]))
    tabs = page.content.decode().split('aria-label="Organization"')[1].split("</nav>")[0]
    for label in shown:
        assert f">{label}</a>" in tabs
    for label in hidden:
        assert f">{label}</a>" not in tabs
