"""No gateway call under a row lock (DESIGN.md, Webhooks; docs/decisions.md). The seat
subscription is read from the gateway first, with no transaction open, and written in a short
transaction that re-checks under the lock that nobody wrote the row meanwhile. While the gateway
is being asked, invitations and seat removals (which lock the same rows) go ahead."""

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import OperationalError, connection, transaction

from organizations.models import Organization
from payments.gateway import Subscription
from payments.models import WebhookEvent
from payments.sandbox.gateway import SandboxGateway
from payments.sandbox.models import SandboxSubscription
from seats import services
from seats.models import SeatSubscription
from tests.conftest import World, open_transactions
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
