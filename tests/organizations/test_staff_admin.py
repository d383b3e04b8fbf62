"""The organization's page in the admin (issue 23, item 15): the team is read there and changed
only on the Members page (so staff cannot remove or demote the last owner by a form), the creation
date is a fact, a lifted suspension leaves no stale reason, and the lifecycle's actions are a link
away. Staff find an organization by its name, its id or any member's email."""

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from organizations.models import Membership, Organization
from organizations.roles import Role
from tests.conftest import World
from tests.factories import MembershipFactory, UserFactory


def change_url(organization: Organization) -> str:
    return reverse("admin:organizations_organization_change", args=[organization.pk])


def the_form_of(
    organization: Organization, membership: Membership, **changes: str
) -> dict[str, Any]:
    """What the change page's form would post if its team's fields could be edited: every field
    of the organization and of its one membership (the management form included)."""
    created = organization.created_at
    return {
        "name": organization.name,
        "created_at_0": f"{created:%Y-%m-%d}",
        "created_at_1": f"{created:%H:%M:%S}",
        "memberships-TOTAL_FORMS": "1",
        "memberships-INITIAL_FORMS": "1",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
        "memberships-0-id": str(membership.pk),
        "memberships-0-organization": str(organization.pk),
        "memberships-0-user": str(membership.user_id),
        "memberships-0-role": membership.role,
        "memberships-0-created_at_0": f"{membership.created_at:%Y-%m-%d}",
        "memberships-0-created_at_1": f"{membership.created_at:%H:%M:%S}",
        "_save": "Save",
        **changes,
    }


@pytest.fixture
def alone(db: None) -> tuple[Organization, Membership]:
    """An organization whose only member is its owner: the last owner."""
    membership = MembershipFactory(role=Role.OWNER, user=UserFactory(email="solo@acme.test"))
    return membership.organization, membership


@pytest.mark.parametrize(
    "changes",
    [{"memberships-0-role": Role.MEMBER}, {"memberships-0-DELETE": "on"}],
    ids=["demote", "remove"],
)
def test_the_admin_cannot_demote_or_remove_the_last_owner(
    admin_client: Client, alone: tuple[Organization, Membership], changes: dict[str, str]
) -> None:
    organization, owner = alone
    admin_client.post(change_url(organization), the_form_of(organization, owner, **changes))
    owner.refresh_from_db()
    assert owner.role == Role.OWNER
    # Nor through the membership's own admin pages.
    membership_change = reverse("admin:organizations_membership_change", args=[owner.pk])
    assert admin_client.post(membership_change, {"role": Role.MEMBER}).status_code == 403
    membership_delete = reverse("admin:organizations_membership_delete", args=[owner.pk])
    assert admin_client.post(membership_delete, {"post": "yes"}).status_code == 403
    owner.refresh_from_db()
    assert owner.role == Role.OWNER
    page = admin_client.get(change_url(organization)).content.decode()
    assert 'name="memberships-0-role"' not in page
    assert 'name="memberships-0-DELETE"' not in page
    assert "solo@acme.test" in page  # the team is shown, read-only


def test_the_creation_date_is_read_only(
    admin_client: Client, alone: tuple[Organization, Membership]
) -> None:
    organization, owner = alone
    before = organization.created_at
    form = the_form_of(organization, owner, created_at_0="2001-01-01", name="Acme Renamed")
    assert admin_client.post(change_url(organization), form).status_code == 302
    organization.refresh_from_db()
    assert (organization.name, organization.created_at) == ("Acme Renamed", before)
    assert 'name="created_at_0"' not in admin_client.get(change_url(organization)).content.decode()


def test_a_lifted_suspension_leaves_no_reason_on_the_page(
    admin_client: Client, world: World
) -> None:
    Organization.objects.filter(pk=world.org.pk).update(
        billing_state="suspended",
        suspended_at=timezone.now(),
        suspended_by_staff=True,
        suspension_reason="Card testing from this account",
    )
    for url in (
        change_url(world.org),
        reverse("admin:dunning_organizationlifecycle_change", args=[world.org.pk]),
    ):
        assert "Card testing from this account" in admin_client.get(url).content.decode()
    # Restored: the columns may keep the old words, the pages no longer show them.
    Organization.objects.filter(pk=world.org.pk).update(billing_state="active")
    for url in (
        change_url(world.org),
        reverse("admin:dunning_organizationlifecycle_change", args=[world.org.pk]),
    ):
        page = admin_client.get(url).content.decode()
        assert "Card testing from this account" not in page
        assert "Suspension reason" not in page
        assert "Retention scheduled" not in page


def test_the_organization_links_to_its_lifecycle_and_its_actions(
    admin_client: Client, world: World
) -> None:
    page = admin_client.get(change_url(world.org)).content.decode()
    timeline = reverse("admin:dunning_organizationlifecycle_change", args=[world.org.pk])
    actions = reverse("admin:dunning_organizationlifecycle_changelist") + f"?q={world.org.pk}"
    assert f'href="{timeline}"' in page
    assert f'href="{actions}"' in page
    listed = admin_client.get(actions)
    assert list(listed.context["cl"].result_list) == [world.org]
    assert 'value="suspend_now"' in listed.content.decode()  # the actions are offered there


@pytest.mark.parametrize("by", ["name", "id", "owner", "member", "billing manager"])
def test_staff_find_an_organization_by_name_id_or_anyones_email(
    admin_client: Client, world: World, by: str
) -> None:
    term = {
        "name": "Acme Robotics",
        "id": str(world.org.pk),
        "owner": world.owner.email,
        "member": world.member.email,
        "billing manager": world.billing.email,
    }[by]
    for name in ("organizations_organization", "dunning_organizationlifecycle"):
        found = admin_client.get(reverse(f"admin:{name}_changelist"), {"q": term})
        assert list(found.context["cl"].result_list) == [world.org], name
