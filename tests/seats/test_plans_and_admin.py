"""Plans are data: seeded by a migration, edited in the admin; a new price applies to new
purchases while running subscriptions keep theirs. Staff can resync a subscription."""

from datetime import timedelta
from importlib import import_module

import pytest
import time_machine
from django.apps import apps
from django.core.management.sql import emit_post_migrate_signal
from django.urls import reverse

from payments.sandbox.models import SandboxPrice, SandboxSubscription
from seats import services
from seats.models import SeatChange, SeatPlan, SeatSubscription
from tests.conftest import World, client_for
from tests.factories import UserFactory
from tests.seats.conftest import buy


@pytest.fixture
def staff(db: None):  # type: ignore[no-untyped-def]
    return client_for(UserFactory(is_staff=True, is_superuser=True))


def test_the_migration_seeds_teams_and_enterprise(db: None) -> None:

    SeatPlan.objects.all().delete()
    import_module("seats.migrations.0002_seat_plans").seed_plans(apps, None)
    plans = {plan.code: plan.unit_amount for plan in SeatPlan.objects.all()}
    assert plans == {"teams": 1800, "enterprise": 7200}


def test_missing_plans_come_back_after_migrate_or_a_flush_but_edits_stay(db: None) -> None:

    SeatPlan.objects.filter(code="enterprise").delete()
    SeatPlan.objects.filter(code="teams").update(unit_amount=1900, is_active=False)
    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")
    plans = {plan.code: (plan.unit_amount, plan.is_active) for plan in SeatPlan.objects.all()}
    assert plans == {"teams": (1900, False), "enterprise": (7200, True)}


def test_a_new_price_applies_to_new_purchases_only(world: World, staff) -> None:  # type: ignore[no-untyped-def]
    buy(world.neighbour, world.outsider, seats=2)
    teams = SeatPlan.objects.get(code="teams")
    response = staff.post(
        reverse("admin:seats_seatplan_change", args=[teams.pk]),
        {
            "code": "teams",
            "name": "Teams",
            "description": "",
            "unit_amount": 1900,
            "currency": "usd",
            "is_active": "on",
            "position": 1,
        },
    )
    assert response.status_code == 302
    buy(world.org, world.owner, seats=3)
    assert SeatSubscription.objects.get(organization=world.neighbour).unit_amount == 1800
    assert SeatSubscription.objects.get(organization=world.org).unit_amount == 1900
    assert SandboxPrice.objects.count() == 2


def test_an_inactive_plan_is_not_offered(world: World) -> None:
    SeatPlan.objects.filter(code="enterprise").update(is_active=False)
    page = client_for(world.owner).get(reverse("org_seats", args=[world.org.pk])).content.decode()
    assert "Enterprise" not in page
    response = client_for(world.owner).get(
        reverse("org_seats_buy", args=[world.org.pk]), {"plan": "enterprise", "seats": 3}
    )
    assert response.status_code == 400


@pytest.mark.parametrize("model", ["seatplan", "seatsubscription", "seatchange", "seatreceipt"])
def test_the_admin_lists_everything(world: World, staff, model: str) -> None:  # type: ignore[no-untyped-def]
    buy(world.org, world.owner, seats=3)
    assert staff.get(reverse(f"admin:seats_{model}_changelist")).status_code == 200


def test_staff_resync_a_subscription_from_the_gateway(world: World, staff) -> None:  # type: ignore[no-untyped-def]
    subscription = buy(world.org, world.owner, seats=3)
    SandboxSubscription.objects.update(quantity=7)  # drifted, e.g. a missed event
    staff.post(
        reverse("admin:seats_seatsubscription_changelist"),
        {"action": "resync", "_selected_action": [subscription.pk]},
    )
    subscription.refresh_from_db()
    assert subscription.quantity == 7


def test_the_daily_resync_settles_an_interrupted_removal(world: World) -> None:

    subscription = buy(world.org, world.owner, seats=6)
    # A removal that died after holding back its seats and before asking the gateway.
    SeatSubscription.objects.filter(pk=subscription.pk).update(removing=2)
    SeatChange.objects.create(
        organization=world.org,
        kind="remove",
        idempotency_key="died",
        seats=2,
        quantity_before=6,
        quantity_after=4,
        gateway_subscription_id=subscription.gateway_subscription_id,
    )
    with time_machine.travel(subscription.synced_at + timedelta(minutes=11), tick=False):
        assert services.seat_subscriptions_resync() == 1
    subscription.refresh_from_db()
    assert (subscription.removing, subscription.quantity, subscription.seats) == (0, 6, 6)
    assert SeatChange.objects.get(idempotency_key="died").status == "failed"


def test_the_daily_resync_fails_an_addition_interrupted_an_hour_ago(world: World) -> None:

    subscription = buy(world.org, world.owner, seats=3)
    SeatChange.objects.create(
        organization=world.org,
        kind="add",
        idempotency_key="interrupted",
        seats=1,
        quantity_before=3,
        quantity_after=4,
        gateway_subscription_id=subscription.gateway_subscription_id,
        actor=world.owner,
    )
    with time_machine.travel(subscription.synced_at + timedelta(minutes=30), tick=False):
        services.seat_subscriptions_resync()
    assert SeatChange.objects.get(idempotency_key="interrupted").status == "pending"
    with time_machine.travel(subscription.synced_at + timedelta(minutes=61), tick=False):
        services.seat_subscriptions_resync()
    assert SeatChange.objects.get(idempotency_key="interrupted").status == "failed"
    assert SeatSubscription.objects.get(pk=subscription.pk).quantity == 3
