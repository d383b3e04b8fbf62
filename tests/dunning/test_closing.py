"""One way to end an organization: the owner's delete and the retention purge both leave a
tombstone that keeps the ledger with the balance frozen on it, and delete the team and usage."""

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.conf import settings
from django.urls import reverse

from analytics.models import DailyUsage
from credits.ledger import usage_debit
from credits.models import CreditAccount, LedgerEntry, UsageRecord
from credits.services import account_for
from dunning import sweeps
from dunning.models import LifecycleTransition
from organizations.models import AuditEvent, Invitation, Membership, Organization
from payments.sandbox import engine
from payments.sandbox.models import SandboxSubscription
from tests.conftest import World, client_for
from tests.credits.conftest import fund, seat_everyone
from tests.factories import InvitationFactory


def owner_deletes(world: World) -> None:
    response = client_for(world.owner).post(
        reverse("org_delete", args=[world.org.pk]), {"confirm_name": "Acme Robotics"}
    )
    assert response.status_code == 302


def retention_purges(world: World) -> None:
    Organization.objects.filter(pk=world.org.pk).update(
        billing_state=Organization.BillingState.SUSPENDED,
        suspended_at=engine.now() - settings.BILLING_RETENTION_PERIOD - timedelta(minutes=1),
    )
    assert sweeps.retention_sweep()["purged"] == 1


@pytest.mark.parametrize(
    ("close", "action"),
    [(owner_deletes, "organization.delete"), (retention_purges, "billing.purge")],
)
def test_it_keeps_the_ledger_and_freezes_the_balance_on_the_tombstone(
    world: World, close: Callable[[World], None], action: str
) -> None:
    seat_everyone(world.org, world.owner)
    account = account_for(organization=world.org)
    fund(account, 25_000_000)
    usage_debit(
        account_id=account.pk,
        user_id=world.member.pk,
        cost=1_234_567,
        request_id="before-closing",
        provider="anthropic",
        model="claude-sonnet-4",
        input_tokens=100,
        output_tokens=10,
    )
    CreditAccount.objects.filter(pk=account.pk).update(
        auto_topup_enabled=True, low_balance_threshold=1, member_daily_limit=5
    )
    InvitationFactory(organization=world.org, email="later@acme.test")
    ledger = list(LedgerEntry.objects.filter(account=account).values_list("pk", "amount"))

    close(world)

    account.refresh_from_db()
    assert account.balance == 25_000_000 - 1_234_567  # frozen, not forfeited
    assert list(LedgerEntry.objects.filter(account=account).values_list("pk", "amount")) == ledger
    assert account.organization_id == world.org.pk
    assert (account.auto_topup_enabled, account.low_balance_threshold) == (False, None)
    assert account.member_daily_limit is None
    assert not UsageRecord.objects.filter(account=account).exists()
    assert not DailyUsage.objects.filter(account=account).exists()
    assert not Membership.objects.filter(organization=world.org).exists()
    assert not Invitation.objects.filter(organization=world.org).exists()
    tombstone = Organization.objects.get(pk=world.org.pk)
    assert tombstone.billing_state == Organization.BillingState.DELETED
    transition = LifecycleTransition.objects.get(organization=tombstone, to_state="deleted")
    assert transition.details["usage_records"] == 1
    assert AuditEvent.objects.filter(organization=tombstone, action=action).count() == 1
    assert SandboxSubscription.objects.get().cancel_at_period_end
    # The neighbour is untouched; the tombstone is 404 for its former owner.
    assert Membership.objects.filter(organization=world.neighbour).exists()
    overview = reverse("org_overview", args=[tombstone.pk])
    assert client_for(world.owner).get(overview).status_code == 404


def test_closing_twice_closes_once(world: World) -> None:
    owner_deletes(world)
    response = client_for(world.owner).post(
        reverse("org_delete", args=[world.org.pk]), {"confirm_name": "Acme Robotics"}
    )
    assert response.status_code == 404
    assert LifecycleTransition.objects.filter(to_state="deleted").count() == 1
