"""The daily rollups: every usage record counted once, in its UTC day, atomically with its
debit; purged with the account's usage; the backfill equal to counting one by one."""

import importlib
import threading
from datetime import UTC, datetime

import pytest
from django.db import DataError, connection, connections
from django.db.models import Sum

from analytics.models import DailyUsage
from analytics.services import organization_usage_delete
from credits.exceptions import InsufficientBalance
from credits.ledger import usage_debit
from credits.models import CreditAccount, UsageRecord
from credits.services import account_for
from dunning.closing import organization_delete
from tests.analytics.conftest import NOW, spend
from tests.conftest import World
from tests.credits.conftest import fund


def rollup_sums(account: CreditAccount) -> dict[str, int]:
    return DailyUsage.objects.filter(account=account).aggregate(
        requests=Sum("requests"), cost=Sum("cost"), input_tokens=Sum("input_tokens")
    )


def test_it_counts_each_record_in_the_row_of_its_day_and_key(
    world: World, acme: CreditAccount
) -> None:
    spend(acme, world.owner, cost=1_000, project="alpha", input_tokens=10)
    spend(acme, world.owner, cost=2_500, project="alpha", input_tokens=20)
    spend(acme, world.owner, cost=700, project="beta")
    spend(acme, world.member, cost=300, project="alpha")

    alpha = DailyUsage.objects.get(account=acme, user=world.owner, project="alpha")
    assert (alpha.requests, alpha.cost, alpha.input_tokens, alpha.output_tokens) == (
        2,
        3_500,
        30,
        200,
    )
    assert alpha.day == NOW.date()
    assert DailyUsage.objects.filter(account=acme).count() == 3
    assert rollup_sums(acme)["cost"] == 4_500


def test_it_counts_a_retried_request_once(world: World, acme: CreditAccount) -> None:
    first = usage_debit(
        account_id=acme.pk,
        user_id=world.member.pk,
        cost=5_000,
        request_id="same",
        provider="openai",
        model="gpt-5",
        input_tokens=1,
        output_tokens=1,
    )
    again = usage_debit(
        account_id=acme.pk,
        user_id=world.member.pk,
        cost=5_000,
        request_id="same",
        provider="openai",
        model="gpt-5",
        input_tokens=1,
        output_tokens=1,
    )
    assert first.created
    assert not again.created
    row = DailyUsage.objects.get(account=acme)
    assert (row.requests, row.cost) == (1, 5_000)


def test_it_counts_nothing_when_the_debit_is_refused(world: World) -> None:
    poor = account_for(organization=world.org)
    fund(poor, 1_000)
    with pytest.raises(InsufficientBalance):
        spend(poor, world.member, cost=5_000)
    assert not DailyUsage.objects.filter(account=poor).exists()


def test_it_rolls_back_with_a_debit_that_fails_after_it(world: World, acme: CreditAccount) -> None:
    """The rollup is written inside the debit's statement: a failure later in it (here the
    usage row's project too long for its column) takes the rollup away with the ledger row."""
    with pytest.raises(DataError):
        spend(acme, world.member, cost=5_000, project="p" * 201)
    assert not UsageRecord.objects.filter(account=acme).exists()
    assert not DailyUsage.objects.filter(account=acme).exists()


def test_it_uses_the_utc_day(world: World, acme: CreditAccount) -> None:
    spend(acme, world.member, cost=1, at=datetime(2026, 3, 10, 23, 59, 59, tzinfo=UTC))
    spend(acme, world.member, cost=2, at=datetime(2026, 3, 11, 0, 0, 0, tzinfo=UTC))
    days = dict(DailyUsage.objects.filter(account=acme).values_list("day", "cost"))
    assert days == {datetime(2026, 3, 10).date(): 1, datetime(2026, 3, 11).date(): 2}


def test_it_deletes_one_organization_and_leaves_the_others(
    world: World, acme: CreditAccount, globex: CreditAccount
) -> None:
    spend(acme, world.member, cost=10)
    spend(globex, world.outsider, cost=20)
    assert organization_usage_delete(organization=world.org) == {"usage_rollups": 1}
    assert not DailyUsage.objects.filter(account=acme).exists()
    assert DailyUsage.objects.filter(account=globex).count() == 1


def test_closing_the_organization_deletes_the_rollups_with_the_records(
    world: World, acme: CreditAccount, globex: CreditAccount
) -> None:
    spend(acme, world.member, cost=10)
    spend(globex, world.outsider, cost=20)
    organization_delete(organization=world.org, actor=world.owner)
    assert not UsageRecord.objects.filter(account=acme).exists()
    assert not DailyUsage.objects.filter(account=acme).exists()
    assert DailyUsage.objects.filter(account=globex).exists()


def test_the_backfill_counts_what_the_trigger_counts(world: World, acme: CreditAccount) -> None:
    for days_ago, person, project in [
        (0, world.owner, "a"),
        (0, world.owner, "a"),
        (3, world.member, ""),
        (40, world.admin, "b"),
    ]:
        spend(acme, person, cost=1_000 + days_ago, days_ago=days_ago, project=project)
    columns = (
        "account_id",
        "day",
        "user_id",
        "provider",
        "model",
        "project",
        "requests",
        "cost",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
    )
    counted = set(DailyUsage.objects.values_list(*columns))
    DailyUsage.objects.all().delete()
    backfill = importlib.import_module("analytics.migrations.0002_backfill_rollups").BACKFILL
    with connection.cursor() as cursor:
        cursor.execute(backfill)
    assert set(DailyUsage.objects.values_list(*columns)) == counted


@pytest.mark.django_db(transaction=True)
def test_concurrent_debits_and_retries_are_each_counted_once(world: World) -> None:
    account = account_for(organization=world.org)
    fund(account, 10**12)
    users = [world.owner, world.member]
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for n in range(15):
                # Both threads send the same request ids: each is a retry of the other's.
                usage_debit(
                    account_id=account.pk,
                    user_id=users[n % 2].pk,
                    cost=1_000 + n,
                    request_id=f"c-{n}",
                    provider="anthropic",
                    model="claude-sonnet-4-5",
                    input_tokens=10,
                    output_tokens=1,
                    at=NOW,
                )
                usage_debit(
                    account_id=account.pk,
                    user_id=users[n % 2].pk,
                    cost=7,
                    request_id=f"c-{index}-{n}",
                    provider="anthropic",
                    model="claude-sonnet-4-5",
                    input_tokens=10,
                    output_tokens=1,
                    at=NOW,
                )
        except BaseException as error:
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    records = UsageRecord.objects.filter(account=account)
    assert records.count() == 15 + 30
    sums = rollup_sums(account)
    assert sums["requests"] == records.count()
    assert sums["cost"] == records.aggregate(total=Sum("cost"))["total"]
