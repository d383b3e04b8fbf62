"""Races on the real database, with threads that start together: two additions at once are both
applied and charged; a removal racing an invitation or an acceptance never leaves more
seat-holders than seats."""

import threading
import uuid
from collections.abc import Callable

import pytest
from django.db import connection

from organizations import services as team
from organizations.exceptions import InvitationUnusable
from organizations.models import Invitation, Membership
from organizations.roles import Role
from payments.sandbox.models import SandboxInvoice, SandboxSubscription
from seats import selectors, services
from seats.exceptions import NoEmptySeat, SeatsInUse
from seats.models import SeatSubscription
from tests.conftest import World
from tests.factories import UserFactory
from tests.seats.conftest import buy, terms_of

pytestmark = pytest.mark.django_db(transaction=True)


def together(*actions: Callable[[], object]) -> list[object]:
    """Run the actions in threads released at the same moment; their results or exceptions."""
    barrier = threading.Barrier(len(actions))
    results: list[object] = [None] * len(actions)

    def run(index: int, action: Callable[[], object]) -> None:
        try:
            barrier.wait()
            results[index] = action()
        except Exception as error:  # the outcome under test
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def holders_and_seats(world: World) -> tuple[int, int]:
    occupancy = selectors.seat_occupancy(organization=world.org)
    return occupancy.occupied, occupancy.seats


def test_two_additions_at_once_are_both_applied_and_charged(world: World) -> None:
    buy(world.org, world.owner, seats=5)

    def adding(seats: int, actor_role: str) -> Callable[[], object]:
        def action() -> object:
            preview = selectors.seat_addition_preview(organization=world.org, seats=seats)
            return services.seats_add(
                actor=world.person(actor_role),
                organization=world.org,
                seats=seats,
                idempotency_key=str(uuid.uuid4()),
                terms=terms_of(preview),
            )

        return action

    for round_number in range(3):
        before = SandboxSubscription.objects.get().quantity
        results = together(adding(2, Role.OWNER), adding(3, Role.BILLING_MANAGER))
        assert all(getattr(r, "status", None) == "succeeded" for r in results), results
        assert SandboxSubscription.objects.get().quantity == before + 5, round_number
        assert SeatSubscription.objects.get(organization=world.org).quantity == before + 5
    invoices = SandboxInvoice.objects.filter(billing_reason="subscription_update", status="paid")
    assert invoices.count() == 6
    # Each invoice charged its own seats: 2 and 3 more on every round (Stripe's two lines: a
    # credit for the old quantity, a charge for the new one).
    assert sorted(
        charge["quantity"] - credit["quantity"] for credit, charge in (i.lines for i in invoices)
    ) == [2, 2, 2, 3, 3, 3]


def test_a_removal_racing_an_invitation_never_overbooks(world: World) -> None:
    owner = Membership.objects.get(user=world.owner)
    buy(world.org, world.owner, seats=5)  # 3 taken, 2 empty
    for round_number in range(4):
        results = together(
            lambda: services.seats_remove(
                actor=world.owner,
                organization=world.org,
                seats=2,
                idempotency_key=str(uuid.uuid4()),
            ),
            lambda n=round_number: team.invitation_create(
                actor=world.owner, membership=owner, email=f"new{n}@acme.test", role=Role.MEMBER
            ),
        )
        occupied, seats = holders_and_seats(world)
        assert occupied <= seats, results
        # Exactly one of the two went through: the other found no empty seat.
        assert sum(isinstance(r, (SeatsInUse, NoEmptySeat)) for r in results) == 1, results
        # Back to 2 empty seats for the next round.
        Invitation.objects.filter(organization=world.org).delete()
        quantity = SandboxSubscription.objects.get().quantity
        if quantity < 5:
            buy_back = selectors.seat_addition_preview(organization=world.org, seats=5 - quantity)
            services.seats_add(
                actor=world.owner,
                organization=world.org,
                seats=5 - quantity,
                idempotency_key=str(uuid.uuid4()),
                terms=terms_of(buy_back),
            )


def test_a_removal_racing_an_acceptance_never_overbooks(world: World) -> None:
    owner = Membership.objects.get(user=world.owner)
    buy(world.org, world.owner, seats=6)  # owner, admin, member + 3 empty
    tokens = []
    for number in range(2):
        invitation = team.invitation_create(
            actor=world.owner, membership=owner, email=f"joiner{number}@acme.test", role="member"
        )
        token = f"token-{number}"
        Invitation.objects.filter(pk=invitation.pk).update(token_hash=team.hash_token(token))
        tokens.append((UserFactory(email=f"joiner{number}@acme.test"), token))
    # 5 of 6 seats taken (2 by pending invitations): 1 empty.
    results = together(
        lambda: services.seats_remove(
            actor=world.owner, organization=world.org, seats=1, idempotency_key="r1"
        ),
        lambda: team.invitation_accept(user=tokens[0][0], token=tokens[0][1]),
        lambda: team.invitation_accept(user=tokens[1][0], token=tokens[1][1]),
        lambda: services.seats_remove(
            actor=world.owner, organization=world.org, seats=1, idempotency_key="r2"
        ),
    )
    occupied, seats = holders_and_seats(world)
    assert occupied <= seats, results
    # Both acceptances keep the seats their invitations held; one removal takes the empty seat,
    # the other finds none.
    assert not any(isinstance(r, InvitationUnusable) for r in results), results
    assert sum(isinstance(r, SeatsInUse) for r in results) == 1, results
    assert (occupied, seats) == (5, 5)
    assert Membership.objects.filter(organization=world.org, role=Role.MEMBER).count() == 3
