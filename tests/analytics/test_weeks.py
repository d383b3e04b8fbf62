"""The weekly rollups: each ended week summed from its daily rows, read by the pages for whole
summed weeks, and every figure still exact when a late record lands in a summed week, when a sum
runs beside a late record, and when the organization is purged beside a sum."""

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection, connections, transaction
from django.db.models import Count, Sum
from django.urls import reverse

from analytics import services
from analytics.models import DailyUsage, SweptWeek, UsageWeek, WeeklyUsage
from analytics.periods import week_last, week_start
from analytics.selectors import Totals
from analytics.services import organization_usage_delete, usage_weeks_sum
from credits.models import CreditAccount, LedgerEntry
from tests.analytics.conftest import spend
from tests.conftest import World, client_for

KEY = ("user_id", "provider", "model", "project")
TRIGGER = "analytics_usage_week_late"
DAY = timedelta(days=1)
SUMS = ("requests", "input_tokens", "output_tokens", "cost")


@pytest.fixture(autouse=True)
def now(world: World) -> Iterator[datetime]:
    """Python's clock at the database's: the triggers and the sum go by the database's clock,
    the pages by Python's."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        moment = cursor.fetchone()[0]
    with time_machine.travel(moment, tick=False):
        yield moment


@pytest.fixture
def today(now: datetime) -> date:
    return now.date()


@pytest.fixture
def past_week(today: date) -> tuple[date, date]:
    """A whole rollup week that ended more than a week ago."""
    first = week_start(week_start(today) - timedelta(days=9))
    return first, week_last(first)


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def months(today: date, *, end: date | None = None) -> dict[str, str]:
    """A custom range of four months: long enough for a bar per week, so whole weeks are read
    from their weekly rows."""
    return {
        "period": "custom",
        "start": (today - timedelta(days=120)).isoformat(),
        "end": (end or today).isoformat(),
    }


def by_key(rows: Any) -> dict[tuple[Any, ...], tuple[int, ...]]:
    return {tuple(row[k] for k in KEY): tuple(row[s] for s in SUMS) for row in rows}


def daily_of_week(account: CreditAccount, first: date) -> dict[tuple[Any, ...], tuple[int, ...]]:
    rows = (
        DailyUsage.objects.filter(account=account, day__range=(first, week_last(first)))
        .values(*KEY)
        .annotate(**{name: Sum(name) for name in SUMS})
    )
    return by_key(rows)


def weekly_of_week(account: CreditAccount, first: date) -> dict[tuple[Any, ...], tuple[int, ...]]:
    return by_key(WeeklyUsage.objects.filter(account=account, start=first).values(*KEY, *SUMS))


def summed(account: CreditAccount, first: date) -> bool | None:
    return (
        UsageWeek.objects.filter(account=account, start=first)
        .values_list("summed", flat=True)
        .first()
    )


def page_totals(world: World, **params: str) -> Totals:
    query = "&".join(f"{name}={value}" for name, value in params.items())
    response = client_for(world.owner).get(reverse("org_usage", args=[world.org.pk]) + "?" + query)
    assert response.status_code == 200
    totals: Totals = response.context["report"].totals
    return totals


def ledger_totals(account: CreditAccount) -> tuple[int, int]:
    sums = LedgerEntry.objects.filter(account=account, kind=LedgerEntry.Kind.USAGE).aggregate(
        cost=Sum("amount"), requests=Count("id")
    )
    return -(sums["cost"] or 0), sums["requests"]


def until(condition: Callable[[], bool]) -> None:
    """Wait for another thread's database session to reach a state (bounded)."""
    for _ in range(1000):
        if condition():
            return
        threading.Event().wait(0.01)
    raise AssertionError("the other session never got there")


def waits_for_a_lock(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return row is not None and row[0] == "Lock"


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid: int = cursor.fetchone()[0]
    return pid


class Session(threading.Thread):
    """Work on its own database connection in a thread; `pause` holds it before the end of its
    transaction until released."""

    def __init__(self, work: Callable[[], Any], *, pause: bool = False) -> None:
        super().__init__()
        self.work = work
        self.pause = pause
        self.paused = threading.Event()
        self.release = threading.Event()
        self.pid = 0
        self.error: BaseException | None = None
        self.result: Any = None

    def run(self) -> None:
        try:
            self.pid = backend_pid()
            with transaction.atomic():
                self.result = self.work()
                if self.pause:
                    self.paused.set()
                    assert self.release.wait(10)
        except BaseException as error:
            self.error = error
        finally:
            self.paused.set()
            connections.close_all()

    def finish(self) -> Any:
        self.release.set()
        self.join(10)
        assert not self.is_alive()
        if self.error is not None:
            raise self.error
        return self.result


# Summing


def test_it_sums_each_ended_week_from_its_daily_rows(
    world: World, acme: CreditAccount, today: date
) -> None:
    days = [today, today - timedelta(days=3), today - timedelta(days=10), today - timedelta(40)]
    for n, day in enumerate(days):
        spend(acme, world.owner, cost=1_000 + n, at=at(day), project="alpha")
        spend(acme, world.member, cost=2_000 + n, at=at(day), model="gpt-5", provider="openai")
        spend(acme, world.member, cost=3_000 + n, at=at(day, 20), model="gpt-5", provider="openai")
    ended = {week_start(day) for day in days} - {week_start(today)}

    result = usage_weeks_sum()

    assert (result["weeks_summed"], result["weeks_waiting"]) == (len(ended), 0)
    # Every week from the first with usage to the last ended one, empty ones too.
    assert SweptWeek.objects.count() == result["weeks_swept"] >= len(ended)
    assert SweptWeek.objects.latest("start").start == week_start(week_start(today) - DAY)
    for first in ended:
        assert summed(acme, first)
        assert weekly_of_week(acme, first) == daily_of_week(acme, first)
    assert not summed(acme, week_start(today))  # never while it lasts
    assert not WeeklyUsage.objects.filter(start=week_start(today)).exists()
    assert usage_weeks_sum() == {"weeks_swept": 0, "weeks_summed": 0, "weeks_waiting": 0}


def test_it_notes_and_sums_a_week_written_before_it_ended(
    world: World, acme: CreditAccount, past_week: tuple[date, date], today: date
) -> None:
    """Rows written while their week was the current one go through no trigger: the week is
    found by the sweep once it has ended."""
    first, last = past_week
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {DailyUsage._meta.db_table} DISABLE TRIGGER {TRIGGER}")
        spend(acme, world.member, cost=10_000, at=at(first))
        spend(acme, world.owner, cost=5_000, at=at(last), project="x")
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no trigger event pending at ALTER
        cursor.execute(f"ALTER TABLE {DailyUsage._meta.db_table} ENABLE TRIGGER {TRIGGER}")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    assert summed(acme, first) is None

    assert usage_weeks_sum()["weeks_summed"] == 1

    assert summed(acme, first)
    assert weekly_of_week(acme, first) == daily_of_week(acme, first)
    assert page_totals(world, **months(today)).cost == 15_000


def test_the_sql_and_the_python_weeks_agree() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT day::date, analytics_week_start(day::date) FROM generate_series("
            "'2019-12-01'::date, '2031-01-31'::date, '1 day') AS day"
        )
        rows = cursor.fetchall()
    assert len(rows) > 4000
    assert all(start == week_start(day) for day, start in rows)


# Reading


def test_pages_read_the_weekly_rows_of_whole_summed_weeks(
    world: World, acme: CreditAccount, past_week: tuple[date, date], today: date
) -> None:
    first, last = past_week
    spend(acme, world.member, cost=10_000, at=at(first))
    spend(acme, world.member, cost=20_000, at=at(last))
    usage_weeks_sum()
    # Tampered with (only here), the weekly row shows where a page reads from.
    WeeklyUsage.objects.filter(account=acme, start=first).update(cost=30_007)

    assert page_totals(world, **months(today)).cost == 30_007
    # Part of the week: its daily rows; a bar per day: daily rows.
    assert page_totals(world, **months(today, end=last - timedelta(days=1))).cost == 10_000
    assert page_totals(world, period="all").cost == 30_000
    UsageWeek.objects.filter(account=acme, start=first).update(summed=False)
    assert page_totals(world, **months(today)).cost == 30_000


def test_a_debit_of_the_current_day_runs_no_week_trigger(
    world: World, acme: CreditAccount, today: date
) -> None:
    """Nothing is added to a debit: its daily row (new or not) passes no trigger's WHEN."""
    spend(acme, world.member, cost=1_000, at=at(today, 0))
    spend(acme, world.member, cost=2_000, at=at(today, 0))  # the same daily row
    spend(acme, world.member, cost=3_000, at=at(today, 0), project="new")  # a new one
    assert not UsageWeek.objects.filter(account=acme).exists()
    assert usage_weeks_sum()["weeks_summed"] == 0


# Late records


def test_a_late_record_in_a_summed_week_marks_it_and_the_page_stays_exact(
    world: World, acme: CreditAccount, past_week: tuple[date, date], today: date
) -> None:
    first, last = past_week
    spend(acme, world.member, cost=10_000, at=at(first))
    usage_weeks_sum()
    assert summed(acme, first)

    spend(acme, world.member, cost=5_000, at=at(last))  # an import, say
    spend(acme, world.owner, cost=7_000, at=at(first), project="late")

    assert summed(acme, first) is False
    totals = page_totals(world, **months(today))
    assert (totals.cost, totals.requests) == ledger_totals(acme) == (22_000, 3)
    assert usage_weeks_sum()["weeks_summed"] == 1
    assert weekly_of_week(acme, first) == daily_of_week(acme, first)
    assert page_totals(world, **months(today)).cost == 22_000


@pytest.mark.django_db(transaction=True)
def test_a_sum_passes_over_a_week_a_late_record_is_writing(
    world: World, acme: CreditAccount, past_week: tuple[date, date], today: date
) -> None:
    first, _ = past_week
    spend(acme, world.member, cost=10_000, at=at(first))
    late = Session(lambda: spend(acme, world.owner, cost=5_000, at=at(first)), pause=True)
    late.start()
    assert late.paused.wait(10)

    assert usage_weeks_sum()["weeks_summed"] == 0
    late.finish()

    assert summed(acme, first) is False
    assert page_totals(world, **months(today)).cost == 15_000
    assert usage_weeks_sum()["weeks_summed"] == 1
    assert weekly_of_week(acme, first) == daily_of_week(acme, first)


@pytest.mark.django_db(transaction=True)
def test_a_late_record_waits_for_a_sum_in_progress_and_marks_its_week_again(
    world: World, acme: CreditAccount, past_week: tuple[date, date], today: date
) -> None:
    first, _ = past_week
    spend(acme, world.member, cost=10_000, at=at(first))
    summing = Session(lambda: services._week_sum(first), pause=True)
    summing.start()
    assert summing.paused.wait(10)
    late = Session(lambda: spend(acme, world.owner, cost=5_000, at=at(first)))
    late.start()
    until(lambda: late.pid != 0 and waits_for_a_lock(late.pid))

    assert summing.finish() == 1
    late.finish()

    # The sum saw 10,000 only, and the late record marked the week: the page reads its days.
    assert weekly_of_week(acme, first) != daily_of_week(acme, first)
    assert summed(acme, first) is False
    assert page_totals(world, **months(today)).cost == 15_000
    usage_weeks_sum()
    assert weekly_of_week(acme, first) == daily_of_week(acme, first)
    assert page_totals(world, **months(today)).cost == 15_000


@pytest.mark.django_db(transaction=True)
def test_a_week_waits_while_a_transaction_from_before_its_end_is_open(
    world: World, acme: CreditAccount, past_week: tuple[date, date], now: datetime
) -> None:
    """A debit that began before its week ended may still commit into it without marking it
    (it is not late): the week is summed only once every such transaction is over."""
    first, _ = past_week
    spend(acme, world.member, cost=10_000, at=at(first))
    assert not services.transactions_open_since(now + timedelta(hours=1))
    open_transaction = Session(lambda: spend(acme, world.member, cost=1, at=at(first)), pause=True)
    open_transaction.start()
    assert open_transaction.paused.wait(10)
    try:
        assert services.transactions_open_since(now + timedelta(hours=1))
        assert not services.transactions_open_since(now - timedelta(hours=1))
    finally:
        open_transaction.finish()
    assert not services.transactions_open_since(now + timedelta(hours=1))


def test_a_week_is_left_for_a_later_run_while_such_a_transaction_is_open(
    world: World, acme: CreditAccount, past_week: tuple[date, date], monkeypatch: Any
) -> None:
    first, _ = past_week
    spend(acme, world.member, cost=10_000, at=at(first))
    monkeypatch.setattr(services, "transactions_open_since", lambda moment: True)
    assert usage_weeks_sum() == {"weeks_swept": 0, "weeks_summed": 0, "weeks_waiting": 1}
    assert summed(acme, first) is False
    assert not SweptWeek.objects.exists()


# The purge


def test_closing_deletes_the_weekly_rows_and_weeks_of_that_organization_only(
    world: World, acme: CreditAccount, globex: CreditAccount, past_week: tuple[date, date]
) -> None:
    first, _ = past_week
    spend(acme, world.member, cost=10, at=at(first))
    spend(globex, world.outsider, cost=20, at=at(first))
    usage_weeks_sum()

    assert organization_usage_delete(organization=world.org) == {"usage_rollups": 2}

    assert not WeeklyUsage.objects.filter(account=acme).exists()
    assert not UsageWeek.objects.filter(account=acme).exists()
    assert WeeklyUsage.objects.filter(account=globex).count() == 1
    assert summed(globex, first)


@pytest.mark.django_db(transaction=True)
def test_closing_waits_for_a_sum_in_progress_and_deletes_what_it_wrote(
    world: World, acme: CreditAccount, past_week: tuple[date, date]
) -> None:
    first, _ = past_week
    spend(acme, world.member, cost=10_000, at=at(first))
    summing = Session(lambda: services._week_sum(first), pause=True)
    summing.start()
    assert summing.paused.wait(10)
    closing = Session(lambda: organization_usage_delete(organization=world.org))
    closing.start()
    until(lambda: closing.pid != 0 and waits_for_a_lock(closing.pid))

    assert summing.finish() == 1
    closing.finish()

    assert not WeeklyUsage.objects.filter(account=acme).exists()
    assert not UsageWeek.objects.filter(account=acme).exists()
    assert not DailyUsage.objects.filter(account=acme).exists()
