"""No gateway call under a row lock (DESIGN.md, Webhooks; docs/decisions.md). The seat
subscription is read from the gateway first, with no transaction open, and written in a short
transaction that re-checks under the lock that nobody wrote the row meanwhile. While the gateway
is being asked, invitations and seat removals (which lock the same rows) go ahead."""

import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.db import OperationalError, connection, transaction
from django.http import HttpResponse
from django.urls import reverse

from organizations import locks
from organizations.models import Invitation, Membership, Organization
from organizations.roles import Role
from payments.gateway import Subscription
from payments.models import WebhookEvent
from payments.sandbox.gateway import SandboxGateway
from payments.sandbox.models import SandboxSubscription
from seats import services
from seats.models import SeatChange, SeatSubscription
from tests.conftest import World, client_for, open_transactions
from tests.factories import UserFactory
from tests.payments.test_dead_letters import post
from tests.seats.conftest import buy

pytestmark = pytest.mark.django_db(transaction=True)

original_retrieve = SandboxGateway.subscription_retrieve


def in_another_connection(work: Callable[[], object]) -> object:
    """Run `work` on a thread of its own (so a connection of its own); its result or error."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(work())
        except Exception as error:
            outcome.append(error)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    return outcome[0]


def lock_both_rows_at_once(organization_id: object) -> str:
    """What a concurrent invitation or seat removal needs: the organization's seat subscription
    row (and, for a first purchase, the organization's), without waiting."""
    try:
        with transaction.atomic():
            list(
                SeatSubscription.objects.select_for_update(nowait=True).filter(
                    organization_id=organization_id
                )
            )
            list(Organization.objects.select_for_update(nowait=True).filter(pk=organization_id))
    except OperationalError:
        return "locked"
    return "free"


def test_the_subscription_event_reads_the_gateway_with_no_row_locked(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This event's handler used to read the subscription while holding the seat subscription's
    and the organization's row locks, inside the dispatcher's transaction: an invitation waited
    for the whole call (up to about 76 s with Stripe's timeouts and retries)."""
    subscription = buy(world.org, world.owner, seats=5)
    seen: list[tuple[int, object]] = []

    def retrieve(self: SandboxGateway, *, subscription_id: str) -> Subscription:
        seen.append(
            (
                open_transactions(),
                in_another_connection(lambda: lock_both_rows_at_once(world.org.pk)),
            )
        )
        return original_retrieve(self, subscription_id=subscription_id)

    monkeypatch.setattr(SandboxGateway, "subscription_retrieve", retrieve)
    SandboxSubscription.objects.filter(pk=subscription.gateway_subscription_id).update(quantity=6)
    event = post(
        "customer.subscription.updated",
        "evt_quantity_six",
        id=subscription.gateway_subscription_id,
        object="subscription",
        status="active",
        metadata={},
        items={"data": []},
    )
    event.refresh_from_db()

    assert event.status == WebhookEvent.Status.PROCESSED
    assert seen  # the handler read the subscription from the gateway
    assert seen == [(0, "free")] * len(seen)
    assert SeatSubscription.objects.get(organization=world.org).quantity == 6


def test_a_refresh_that_read_an_older_state_reads_again_instead_of_writing_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two refreshes at once: the first reads quantity 5, then (while it is still on its way back
    from the gateway) the quantity becomes 7 and a second refresh writes 7. The first must not
    write its 5 over it: the row changed since it began reading, so it reads again."""
    subscription = buy(world.org, world.owner, seats=5)
    sub_id = subscription.gateway_subscription_id
    first_has_read, second_done = threading.Event(), threading.Event()
    reads: list[int] = []

    def retrieve(self: SandboxGateway, *, subscription_id: str) -> Subscription:
        fetched = original_retrieve(self, subscription_id=subscription_id)
        reads.append(fetched.quantity)
        if threading.current_thread().name == "first" and len(reads) == 1:
            first_has_read.set()
            assert second_done.wait(timeout=20)
        return fetched

    monkeypatch.setattr(SandboxGateway, "subscription_retrieve", retrieve)
    results: dict[str, Any] = {}

    def first() -> None:
        try:
            results["first"] = services.seat_subscription_refresh(subscription_id=sub_id)
        finally:
            connection.close()

    thread = threading.Thread(target=first, name="first")
    thread.start()
    assert first_has_read.wait(timeout=20)
    SandboxSubscription.objects.filter(pk=sub_id).update(quantity=7)
    results["second"] = services.seat_subscription_refresh(subscription_id=sub_id)
    second_done.set()
    thread.join(timeout=30)

    assert reads == [5, 7, 7]  # first, second, first again
    assert results["first"].quantity == results["second"].quantity == 7
    assert SeatSubscription.objects.get(organization=world.org).quantity == 7


# Row locks on request paths wait a bounded time, then the person is told to try again.

HELD_FOR = 10.0  # seconds another transaction keeps the seat subscription row locked
ANSWERED_WITHIN = 5.0  # seconds: the bounded wait (0.3 s here) and the request itself


@contextmanager
def seat_row_held(organization_id: object) -> Iterator[None]:
    """Another transaction holds the organization's seat subscription row (as a slow writer
    would) for HELD_FOR seconds, from a thread of its own."""
    locked, done = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                list(
                    SeatSubscription.objects.select_for_update().filter(
                        organization_id=organization_id
                    )
                )
                locked.set()
                done.wait(timeout=HELD_FOR)
        finally:
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert locked.wait(timeout=10)
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=30)


@pytest.fixture
def short_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locks, "REQUEST_LOCK_WAIT", timedelta(milliseconds=300))


def timed(request: Callable[[], HttpResponse]) -> tuple[HttpResponse, float]:
    began = time.monotonic()
    response = request()
    return response, time.monotonic() - began


def test_an_invitation_behind_a_locked_seat_row_is_told_to_try_again(
    world: World, short_wait: None
) -> None:
    buy(world.org, world.owner, seats=10)
    with seat_row_held(world.org.pk):
        response, took = timed(
            lambda: client_for(world.owner).post(
                reverse("org_invite", args=[world.org.pk]),
                {"email": "newcomer@acme.test", "role": Role.MEMBER},
            )
        )
    assert took < ANSWERED_WITHIN
    assert response.status_code == 400
    assert "try again in a moment" in response.content.decode().lower()
    assert not Invitation.objects.filter(email="newcomer@acme.test").exists()
    # Once the other change is done, the same invitation goes through.
    response = client_for(world.owner).post(
        reverse("org_invite", args=[world.org.pk]),
        {"email": "newcomer@acme.test", "role": Role.MEMBER},
    )
    assert response.status_code == 302
    assert Invitation.objects.filter(email="newcomer@acme.test").exists()


def test_a_seat_removal_behind_a_locked_seat_row_is_told_to_try_again(
    world: World, short_wait: None
) -> None:
    buy(world.org, world.owner, seats=10)
    with seat_row_held(world.org.pk):
        response, took = timed(
            lambda: client_for(world.owner).post(
                reverse("org_seats_remove", args=[world.org.pk]),
                {"seats": 2, "key": str(uuid.uuid4())},
            )
        )
    assert took < ANSWERED_WITHIN
    assert response.status_code == 400
    assert "Another seat change for this organization" in response.content.decode()
    assert SandboxSubscription.objects.get().quantity == 10
    assert not SeatChange.objects.filter(kind=SeatChange.Kind.REMOVE).exists()
    assert SeatSubscription.objects.get(organization=world.org).removing == 0


def test_accepting_an_invitation_behind_a_locked_seat_row_answers_busy_not_500(
    world: World, short_wait: None
) -> None:
    buy(world.org, world.owner, seats=10)
    mail.outbox.clear()
    client_for(world.owner).post(
        reverse("org_invite", args=[world.org.pk]),
        {"email": "joiner@acme.test", "role": Role.MEMBER},
    )
    invitation = Invitation.objects.get(email="joiner@acme.test")
    match = re.search(r"/invitations/([\w-]+)/", mail.outbox[-1].body)
    assert match
    token = match.group(1)
    joiner = UserFactory(email="joiner@acme.test")
    with seat_row_held(world.org.pk):
        response, took = timed(
            lambda: client_for(joiner).post(reverse("invitation_accept", args=[token]))
        )
    assert took < ANSWERED_WITHIN
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "try again" in response.content.decode().lower()
    assert not Membership.objects.filter(organization=world.org, user=joiner).exists()
    invitation.refresh_from_db()
    assert invitation.accepted_at is None
