"""Seat rules on the Members page: inviting or making someone an owner, admin or member needs an
empty seat; removing someone or revoking an invitation frees it at once."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from organizations import services as team
from organizations.exceptions import TeamRuleError
from organizations.models import Invitation, Membership
from organizations.roles import Role
from seats.exceptions import NoEmptySeat
from seats.selectors import member_has_seat
from tests.conftest import World, client_for
from tests.factories import InvitationFactory, UserFactory
from tests.seats.conftest import buy


def invite(world: World, email: str, role: str = Role.MEMBER) -> Invitation:
    owner = Membership.objects.get(user=world.owner)
    return team.invitation_create(actor=world.owner, membership=owner, email=email, role=role)


def test_an_organization_that_never_bought_seats_is_not_limited(world: World) -> None:
    for number in range(5):
        invite(world, f"person{number}@acme.test")
    assert Invitation.objects.filter(organization=world.org).count() == 5


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN, Role.MEMBER])
def test_inviting_a_seat_role_needs_an_empty_seat(world: World, role: str) -> None:
    buy(world.org, world.owner, seats=4)  # owner, admin, member + 1 empty
    invite(world, "first@acme.test", role)
    with pytest.raises(NoEmptySeat, match="all 4 seats are taken"):
        invite(world, "second@acme.test", role)
    # Billing managers need none.
    invite(world, "billing2@acme.test", Role.BILLING_MANAGER)


def test_the_members_page_refuses_with_an_add_seats_link(world: World) -> None:
    buy(world.org, world.owner, seats=3)
    response = client_for(world.billing).post(
        reverse("org_invite", args=[world.org.pk]), {"email": "new@acme.test", "role": "member"}
    )
    page = response.content.decode()
    assert response.status_code == 400
    assert "There is no empty seat" in page
    assert reverse("org_seats_add", args=[world.org.pk]) + "?seats=1" in page
    assert not Invitation.objects.filter(email="new@acme.test").exists()


def test_revoking_an_invitation_frees_its_seat_at_once(world: World) -> None:
    buy(world.org, world.owner, seats=4)
    first = invite(world, "first@acme.test")
    with pytest.raises(NoEmptySeat):
        invite(world, "second@acme.test")
    owner = Membership.objects.get(user=world.owner)
    team.invitation_revoke(actor=world.owner, membership=owner, invitation=first)
    invite(world, "second@acme.test")


def test_removing_a_member_frees_their_seat_at_once(world: World) -> None:
    buy(world.org, world.owner, seats=3)
    with pytest.raises(NoEmptySeat):
        invite(world, "new@acme.test")
    owner = Membership.objects.get(user=world.owner)
    team.membership_remove(
        actor=world.owner, membership=owner, target=Membership.objects.get(user=world.member)
    )
    invite(world, "new@acme.test")


def test_an_expired_invitation_needs_a_seat_to_be_resent(world: World) -> None:
    buy(world.org, world.owner, seats=4)
    expired = InvitationFactory(
        organization=world.org,
        email="old@acme.test",
        expires_at=timezone.now() - timedelta(days=1),
    )
    invite(world, "fresh@acme.test")  # takes the empty seat the expired one gave up
    owner = Membership.objects.get(user=world.owner)
    with pytest.raises(NoEmptySeat):
        team.invitation_resend(actor=world.owner, membership=owner, invitation=expired)


def test_making_a_billing_manager_a_member_needs_an_empty_seat(world: World) -> None:
    buy(world.org, world.owner, seats=3)
    billing = Membership.objects.get(user=world.billing)
    client = client_for(world.owner)
    url = reverse("org_member_role", args=[world.org.pk, billing.pk])
    response = client.post(url, {"role": Role.MEMBER})
    page = client.get(response["Location"]).content.decode()
    assert "There is no empty seat" in page
    assert (
        f'<a href="{reverse("org_seats_add", args=[world.org.pk])}?seats=1">Add seats</a>' in page
    )
    billing.refresh_from_db()
    assert billing.role == Role.BILLING_MANAGER
    # Making a member a billing manager frees a seat, which the other change can then take.
    member = Membership.objects.get(user=world.member)
    client.post(
        reverse("org_member_role", args=[world.org.pk, member.pk]),
        {"role": Role.BILLING_MANAGER},
    )
    client.post(url, {"role": Role.MEMBER})
    billing.refresh_from_db()
    assert billing.role == Role.MEMBER


def test_a_pending_invitation_keeps_its_seat_through_acceptance(world: World) -> None:
    buy(world.org, world.owner, seats=4)
    invitation = invite(world, "joiner@acme.test")
    token = "joiner-token"
    Invitation.objects.filter(pk=invitation.pk).update(token_hash=team.hash_token(token))

    user = UserFactory(email="joiner@acme.test")
    membership = team.invitation_accept(user=user, token=token)
    assert membership.role == Role.MEMBER

    assert member_has_seat(membership=membership)


def test_a_repeated_invitation_is_reported_as_such_even_when_full(world: World) -> None:

    buy(world.org, world.owner, seats=4)
    invite(world, "again@acme.test")
    with pytest.raises(TeamRuleError, match="already has an open invitation") as refused:
        invite(world, "again@acme.test")
    assert not isinstance(refused.value, NoEmptySeat)
    with pytest.raises(NoEmptySeat):
        invite(world, "other@acme.test")
    assert Invitation.objects.filter(organization=world.org).count() == 1
