"""A deleted organization is charged no more: its seats end with the period already paid."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.urls import reverse

from dunning import closing, sweeps
from organizations.models import Organization
from payments.gateway import GatewayError
from payments.sandbox import engine
from payments.sandbox.models import SandboxSubscription
from seats.services import seat_subscriptions_resync
from tests.conftest import World, client_for
from tests.seats.conftest import buy


def test_it_ends_the_seats_when_the_owner_deletes_the_organization(world: World) -> None:
    buy(world.org, world.owner, seats=5)
    client_for(world.owner).post(
        reverse("org_delete", args=[world.org.pk]), {"confirm_name": "Acme Robotics"}
    )
    assert Organization.objects.get(pk=world.org.pk).billing_state == "deleted"
    subscription = SandboxSubscription.objects.get()
    assert subscription.cancel_at_period_end
    assert subscription.status == "active"  # the paid period runs out; nothing more is billed


def test_it_ends_the_seats_when_the_retention_purge_deletes_the_data(world: World) -> None:
    buy(world.org, world.owner, seats=5)
    Organization.objects.filter(pk=world.org.pk).update(
        billing_state=Organization.BillingState.SUSPENDED,
        suspended_at=engine.now() - settings.BILLING_RETENTION_PERIOD - timedelta(minutes=1),
    )
    assert sweeps.retention_sweep()["purged"] == 1
    assert SandboxSubscription.objects.get().cancel_at_period_end
    assert sweeps.retention_sweep()["purged"] == 0


def test_an_organization_without_seats_is_deleted_without_the_gateway(world: World) -> None:
    client_for(world.owner).post(
        reverse("org_delete", args=[world.org.pk]), {"confirm_name": "Acme Robotics"}
    )
    assert Organization.objects.get(pk=world.org.pk).billing_state == "deleted"
    assert not SandboxSubscription.objects.exists()


def test_the_daily_resync_ends_seats_the_gateway_missed_at_closing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    buy(world.org, world.owner, seats=5)

    def unreachable(**_: object) -> None:
        raise GatewayError("the payment provider did not answer")

    monkeypatch.setattr(closing, "seats_end_with_organization", unreachable)
    client_for(world.owner).post(
        reverse("org_delete", args=[world.org.pk]), {"confirm_name": "Acme Robotics"}
    )
    assert Organization.objects.get(pk=world.org.pk).billing_state == "deleted"
    assert not SandboxSubscription.objects.get().cancel_at_period_end
    seat_subscriptions_resync()
    assert SandboxSubscription.objects.get().cancel_at_period_end
