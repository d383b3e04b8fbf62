"""Chaotic delivery (SANDBOX_DELIVERY=chaos): the sandbox delivers its events as Stripe allows
itself to (https://docs.stripe.com/webhooks): late, "doesn't guarantee the delivery of events in
the order that they're generated" (#event-ordering), the same event "more than once"
(#handle-duplicate-events), and an undelivered one retried "for up to three days" (#retries).
Each behaviour is forced alone here, then all of them together, seeded, with the books checked.
The sandbox's clock decides when a late event is due: moving it (as `sandbox_advance` does, or
time-machine) brings it."""

import uuid
from datetime import timedelta

import pytest
from django.core import mail

from credits.models import LedgerEntry, Purchase
from credits.services import account_for
from invoices.models import Invoice
from organizations.models import AuditEvent
from payments.models import WebhookEvent
from payments.sandbox import chaos, engine
from payments.sandbox.models import SandboxEvent, SandboxSubscription
from seats import selectors, services
from seats.models import SeatReceipt, SeatSubscription
from tests.conftest import World, drain, pytest_report_header, settle
from tests.credits.test_purchases import confirm, save_card
from tests.seats.conftest import buy, terms_of

HOUR = timedelta(hours=1)


@pytest.fixture
def chaotic(settings, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:  # type: ignore[no-untyped-def]
    """Chaotic delivery with every behaviour off; each test turns on what it proves."""
    settings.SANDBOX_DELIVERY = "chaos"
    monkeypatch.setattr(chaos, "DELAYED", 0.0)
    monkeypatch.setattr(chaos, "DUPLICATED", 0.0)
    monkeypatch.setattr(chaos, "DROPPED", 0.0)
    return monkeypatch


def received() -> list[str]:
    """Event ids in the order the endpoint stored them."""
    return list(WebhookEvent.objects.order_by("pk").values_list("event_id", flat=True))


def advance(delta: timedelta) -> None:
    engine.clock_advance(seconds=int(delta.total_seconds()))


def test_events_arrive_late_when_the_sandbox_clock_reaches_them(
    world: World, chaotic: pytest.MonkeyPatch
) -> None:
    chaotic.setattr(chaos, "DELAYED", 1.0)
    save_card(world)
    confirm(world, 5_000)  # credited at once, from the gateway's answer
    events = list(SandboxEvent.objects.order_by("next_attempt_at"))
    assert events
    assert all(event.next_attempt_at > event.created for event in events)
    assert all(event.next_attempt_at - event.created <= chaos.LONGEST_DELAY for event in events)

    settle()
    assert received() == []  # nothing is due yet
    for hours in range(1, 25):
        advance(HOUR)
        settle()
        due = [event.id for event in events if event.next_attempt_at <= engine.now()]
        assert sorted(received()) == sorted(due), f"after {hours} hours"
    assert len(received()) == len(events)
    # Late and all, the purchase was credited once.
    account = account_for(organization=world.org)
    assert account.balance == 50_000_000
    assert LedgerEntry.objects.filter(account=account, kind="purchase").count() == 1
    assert set(WebhookEvent.objects.values_list("status", flat=True)) <= {"processed", "ignored"}


def test_events_of_a_later_action_may_arrive_before_an_earlier_ones(
    world: World, chaotic: pytest.MonkeyPatch
) -> None:
    plans = iter([chaos.Plan(delay=2 * HOUR, copies=1, drops=0)] * 100)
    chaotic.setattr(chaos, "plan", lambda: next(plans))
    save_card(world)  # the first action: its events two hours late
    first = set(SandboxEvent.objects.values_list("id", flat=True))
    plans = iter([chaos.Plan(delay=timedelta(0), copies=1, drops=0)] * 100)
    confirm(world, 5_000)  # the second: at once
    second = set(SandboxEvent.objects.values_list("id", flat=True)) - first

    drain()
    order = received()
    assert set(order) == first | second
    assert set(order[: len(second)]) == second  # the later action's events came first
    assert Purchase.objects.get().status == Purchase.Status.PAID
    assert account_for(organization=world.org).balance == 50_000_000


def test_every_event_delivered_twice_moves_the_books_once(
    world: World, chaotic: pytest.MonkeyPatch
) -> None:
    chaotic.setattr(chaos, "DUPLICATED", 1.0)
    buy(world.org, world.owner, seats=4)
    mail.outbox.clear()
    drain()

    events = SandboxEvent.objects.all()
    assert {(event.copies, event.deliveries) for event in events} == {(2, 2)}
    assert {stored.deliveries for stored in WebhookEvent.objects.all()} == {2}
    assert WebhookEvent.objects.count() == events.count()  # the same ids, stored once each
    assert set(WebhookEvent.objects.values_list("attempts", flat=True)) <= {0, 1}
    subscription = SeatSubscription.objects.get(organization=world.org)
    assert (subscription.status, subscription.quantity) == ("active", 4)
    assert SeatReceipt.objects.filter(organization=world.org).count() == 1
    assert AuditEvent.objects.filter(organization=world.org, action="seats.purchase").count() == 1
    assert not [message for message in mail.outbox if "Seats bought" in message.subject]


def test_a_lost_delivery_is_redelivered_later(world: World, chaotic: pytest.MonkeyPatch) -> None:
    chaotic.setattr(chaos, "DROPPED", 1.0)
    chaotic.setattr(chaos, "MOST_DROPS", 1)
    save_card(world)
    confirm(world, 5_000)

    settle()
    assert received() == []  # every first attempt was lost on the way
    events = list(SandboxEvent.objects.all())
    assert {(event.attempts, event.drops) for event in events} == {(1, 0)}
    assert {event.last_response for event in events} == {"lost on the way (chaotic delivery)"}
    assert all(
        timedelta(minutes=1) <= event.next_attempt_at - engine.now() <= chaos.LONGEST_REDELIVERY
        for event in events
    )

    drain()
    assert len(received()) == len(events)
    assert {(event.attempts, event.deliveries) for event in SandboxEvent.objects.all()} == {(2, 1)}
    assert account_for(organization=world.org).balance == 50_000_000


def test_all_of_it_at_once_leaves_the_books_agreeing_with_the_gateway(
    world: World, settings
) -> None:  # type: ignore[no-untyped-def]
    """Seeded chaos with its real odds over a seat purchase, two additions, a removal and two
    credit purchases: once the queue is drained the local books say what the gateway says."""
    settings.SANDBOX_DELIVERY = "chaos"
    chaos.reset(20_261_208)
    subscription = buy(world.org, world.owner, seats=3)
    for seats in (2, 1):
        engine_quantity = SandboxSubscription.objects.get().quantity
        buy_more(world, seats)
        assert SandboxSubscription.objects.get().quantity == engine_quantity + seats
    save_card(world)
    confirm(world, 5_000)
    confirm(world, 10_000)
    kinds = SandboxEvent.objects.values_list("copies", "drops", "next_attempt_at", "created")
    assert any(copies == 2 for copies, *_ in kinds)
    assert any(drops for _, drops, *_ in kinds)
    assert any(due > created for *_, due, created in kinds)

    drain()

    gateway_subscription = SandboxSubscription.objects.get(pk=subscription.gateway_subscription_id)
    local = SeatSubscription.objects.get(organization=world.org)
    assert (local.status, local.quantity) == (gateway_subscription.status, 6)
    assert gateway_subscription.quantity == 6
    assert SeatReceipt.objects.filter(organization=world.org).count() == 3
    account = account_for(organization=world.org)
    assert account.balance == 150_000_000
    assert LedgerEntry.objects.filter(account=account, kind="purchase").count() == 2
    assert set(Invoice.objects.values_list("status", flat=True)) == {"paid"}
    assert set(WebhookEvent.objects.values_list("status", flat=True)) <= {"processed", "ignored"}
    assert not SandboxEvent.objects.filter(next_attempt_at__isnull=False).exists()


def buy_more(world: World, seats: int) -> None:
    preview = selectors.seat_addition_preview(organization=world.org, seats=seats)
    services.seats_add(
        actor=world.owner,
        organization=world.org,
        seats=seats,
        idempotency_key=str(uuid.uuid4()),
        terms=terms_of(preview),
    )


def test_a_seed_replays_the_same_chaos_and_mixes_every_behaviour() -> None:
    chaos.reset(42)
    first = [chaos.plan() for _ in range(200)]
    chaos.reset(42)
    assert [chaos.plan() for _ in range(200)] == first
    assert any(plan.delay > timedelta(0) for plan in first)
    assert any(plan.delay == timedelta(0) for plan in first)
    assert any(plan.copies == 2 for plan in first)
    assert any(plan.drops for plan in first)
    chaos.reset(43)
    assert [chaos.plan() for _ in range(200)] != first


def test_the_test_header_prints_the_seed_to_replay(settings, pytestconfig) -> None:  # type: ignore[no-untyped-def]
    settings.SANDBOX_DELIVERY = "chaos"
    settings.SANDBOX_CHAOS_SEED = 1234
    assert any(
        "SANDBOX_DELIVERY=chaos SANDBOX_CHAOS_SEED=1234" in line
        for line in pytest_report_header(pytestconfig)
    )


def test_default_delivery_is_unchanged(world: World) -> None:
    save_card(world)
    confirm(world, 5_000)
    events = SandboxEvent.objects.all()
    assert {(event.copies, event.drops) for event in events} == {(1, 0)}
    assert all(event.next_attempt_at == event.created for event in events)
    settle()
    assert {(event.attempts, event.deliveries) for event in SandboxEvent.objects.all()} == {(1, 1)}
    assert not SandboxEvent.objects.filter(next_attempt_at__isnull=False).exists()
