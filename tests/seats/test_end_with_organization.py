"""A deleted organization is charged no more: its seats end with the period already paid."""

from datetime import timedelta

from django.conf import settings
from django.urls import reverse

from invoices import lifecycle
from organizations.models import Organization
from payments.sandbox import engine
from payments.sandbox.models import SandboxSubscription
from tests.conftest import World, client_for
from tests.seats.conftest import buy


def test_it_ends_the_seats_when_the_owner_deletes_the_organization(world: World) -> None:
    buy(world.org, world.owner, seats=5)
    client_for(world.owner).post(
        reverse("org_delete", args=[world.org.pk]), {"confirm_name": "Acme Robotics"}
    )
    assert not Organization.objects.filter(pk=world.org.pk).exists()
    subscription = SandboxSubscription.objects.get()
    assert subscription.cancel_at_period_end
    assert subscription.status == "active"  # the paid period runs out; nothing more is billed


def test_it_ends_the_seats_when_the_retention_purge_deletes_the_data(world: World) -> None:
    buy(world.org, world.owner, seats=5)
    Organization.objects.filter(pk=world.org.pk).update(
        billing_state=Organization.BillingState.SUSPENDED,
        suspended_at=engine.now() - settings.BILLING_RETENTION_PERIOD - timedelta(minutes=1),
    )
    assert lifecycle.retention_sweep()["purged"] == 1
    assert SandboxSubscription.objects.get().cancel_at_period_end
    assert lifecycle.retention_sweep()["purged"] == 0


def test_an_organization_without_seats_is_deleted_without_the_gateway(world: World) -> None:
    client_for(world.owner).post(
        reverse("org_delete", args=[world.org.pk]), {"confirm_name": "Acme Robotics"}
    )
    assert not Organization.objects.filter(pk=world.org.pk).exists()
    assert not SandboxSubscription.objects.exists()
