"""Who holds a seat: owners, admins, members and their pending invitations; billing managers and
their invitations never; expired, revoked and accepted invitations no longer."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from organizations.models import Membership
from organizations.roles import Role
from seats import selectors
from seats.models import SeatSubscription
from tests.conftest import World, client_for
from tests.factories import InvitationFactory, MembershipFactory, UserFactory
from tests.seats.conftest import buy, give_seats


@pytest.fixture
def invitations(world: World) -> None:
    for email, role in [
        ("pending-member@acme.test", Role.MEMBER),
        ("pending-admin@acme.test", Role.ADMIN),
        ("pending-owner@acme.test", Role.OWNER),
        ("pending-billing@acme.test", Role.BILLING_MANAGER),
    ]:
        InvitationFactory(organization=world.org, email=email, role=role)
    past = timezone.now() - timedelta(days=1)
    InvitationFactory(organization=world.org, email="expired@acme.test", expires_at=past)
    InvitationFactory(organization=world.org, email="revoked@acme.test", revoked_at=past)
    InvitationFactory(organization=world.org, email="accepted@acme.test", accepted_at=past)
    # The neighbour's people and invitations never count here.
    InvitationFactory(organization=world.neighbour, email="globex-invite@globex.test")
    MembershipFactory(organization=world.neighbour, role=Role.MEMBER)


def test_occupancy_counts_every_role_and_pending_invitation(
    world: World, invitations: None
) -> None:
    buy(world.org, world.owner, seats=8)
    occupancy = selectors.seat_occupancy(organization=world.org)
    holders = [(h.email, h.kind) for h in occupancy.holders]
    assert holders == [
        ("owner@acme.test", "member"),
        ("admin@acme.test", "member"),
        ("member@acme.test", "member"),
        ("pending-member@acme.test", "invitation"),
        ("pending-admin@acme.test", "invitation"),
        ("pending-owner@acme.test", "invitation"),
    ]
    assert [h.email for h in occupancy.without_seat] == [
        "billing_manager@acme.test",
        "pending-billing@acme.test",
    ]
    assert (occupancy.seats, occupancy.occupied, occupancy.empty, occupancy.over) == (8, 6, 2, 0)
    assert all(h.has_seat for h in occupancy.holders)
    assert selectors.occupied_seat_count(organization_id=world.org.pk) == 6


def test_the_tab_shows_purchased_occupied_empty_and_who(world: World, invitations: None) -> None:
    buy(world.org, world.owner, seats=8)
    page = client_for(world.billing).get(reverse("org_seats", args=[world.org.pk]))
    text = page.content.decode()
    assert page.status_code == 200
    for label, number in [("Purchased", 8), ("Occupied", 6), ("Empty", 2)]:
        assert f'<span class="muted">{label}</span><strong>{number}</strong>' in text
    assert "pending-admin@acme.test" in text
    assert "invitation pending" in text
    assert "Next invoice" in text
    assert "$144.00" in text
    assert "expired@acme.test" not in text
    assert "globex" not in text


def test_without_seats_the_tab_says_so_and_offers_the_purchase(world: World) -> None:
    page = client_for(world.owner).get(reverse("org_seats", args=[world.org.pk])).content.decode()
    assert "No seats bought yet" in page
    assert "$18.00 per seat per month" in page
    assert "$72.00 per seat per month" in page
    assert selectors.seat_occupancy(organization=world.org).limited is False


@pytest.mark.parametrize(
    ("role", "has_seat"),
    [(Role.OWNER, True), (Role.ADMIN, True), (Role.MEMBER, True), (Role.BILLING_MANAGER, False)],
)
def test_member_has_seat_by_role(world: World, role: str, has_seat: bool) -> None:
    membership = Membership.objects.get(organization=world.org, user=world.person(role))
    assert selectors.member_has_seat(membership=membership) is False  # no seats bought yet
    buy(world.org, world.owner, seats=3)
    assert selectors.member_has_seat(membership=membership) is has_seat


def test_member_has_seat_is_two_queries(world: World, django_assert_num_queries) -> None:  # type: ignore[no-untyped-def]
    buy(world.org, world.owner, seats=3)
    membership = Membership.objects.get(user=world.member)
    with django_assert_num_queries(2):
        assert selectors.member_has_seat(membership=membership)


def test_when_seats_are_fewer_than_people_the_newest_go_without(world: World) -> None:
    buy(world.org, world.owner, seats=4)
    newcomer = MembershipFactory(
        organization=world.org, role=Role.MEMBER, user=UserFactory(email="new@acme.test")
    )
    # The gateway lowered the quantity (e.g. from its dashboard): the webhook mirrors it.
    SeatSubscription.objects.filter(organization=world.org).update(quantity=2)
    seated = {
        m.user.email: selectors.member_has_seat(membership=m)
        for m in Membership.objects.filter(organization=world.org).select_related("user")
    }
    assert seated == {
        "owner@acme.test": True,
        "admin@acme.test": True,
        "billing_manager@acme.test": False,
        "member@acme.test": False,
        "new@acme.test": False,
    }
    occupancy = selectors.seat_occupancy(organization=world.org)
    assert (occupancy.empty, occupancy.over) == (0, 2)
    assert [h.has_seat for h in occupancy.holders] == [True, True, False, False]
    assert newcomer.pk


def test_seats_being_removed_are_not_available(world: World) -> None:
    buy(world.org, world.owner, seats=4)
    SeatSubscription.objects.filter(organization=world.org).update(removing=1)
    assert selectors.seat_occupancy(organization=world.org).empty == 0


def test_give_seats_is_enough_for_member_has_seat(world: World) -> None:

    membership = Membership.objects.get(user=world.member)
    assert not selectors.member_has_seat(membership=membership)
    give_seats(world.org, quantity=3)
    assert selectors.member_has_seat(membership=membership)
    give_seats(world.org, quantity=2)  # the newest seat-holder goes without
    assert not selectors.member_has_seat(membership=membership)
