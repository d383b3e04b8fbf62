"""Property: whatever the usage and whatever the filters, the totals a Usage page shows (and
its CSV) equal the sum of the ledger's usage entries for the same filters, and for members
only their own; with the weekly rollups summed or not, and with late records landing in summed
weeks afterwards."""

from dataclasses import dataclass
from datetime import date, timedelta
from urllib.parse import urlencode

import pytest
from django.db import transaction
from django.db.models import Count, Sum
from django.urls import reverse
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from accounts.models import User
from analytics.filters import NO_PROJECT, UsageFilters
from analytics.periods import Period
from analytics.services import usage_weeks_sum
from analytics.templatetags.usage_money import dollars
from credits.models import CreditAccount, LedgerEntry
from tests.analytics.conftest import NOW, TODAY, spend
from tests.analytics.test_pages import csv_rows
from tests.conftest import World, client_for

MODELS = [("anthropic", "claude-sonnet-4-5"), ("openai", "gpt-5"), ("google", "gemini-2.5-pro")]
PROJECTS = ["", "alpha", "beta"]
PEOPLE = ["owner", "admin", "member"]


@dataclass(frozen=True)
class Event:
    person: str
    model: int
    project: str
    days_ago: int
    seconds: int
    cost: int
    tokens: int


event = st.builds(
    Event,
    person=st.sampled_from(PEOPLE),
    model=st.integers(0, len(MODELS) - 1),
    project=st.sampled_from(PROJECTS),
    days_ago=st.integers(0, 420),
    seconds=st.integers(0, 86_399),
    cost=st.integers(0, 5_000_000),
    tokens=st.integers(0, 200_000),
)
events = st.lists(event, max_size=25)

periods = st.one_of(
    st.sampled_from(["7d", "30d", "month", "last-month", "year", "all"]).map(
        lambda p: {"period": p}
    ),
    st.tuples(st.integers(0, 450), st.integers(0, 450)).map(
        lambda days: {
            "period": "custom",
            "start": (TODAY - timedelta(days=max(days))).isoformat(),
            "end": (TODAY - timedelta(days=min(days))).isoformat(),
        }
    ),
)
filters = st.fixed_dictionaries(
    {},
    optional={
        "member": st.sampled_from(PEOPLE),
        "model": st.integers(0, len(MODELS) - 1),
        "project": st.sampled_from(PROJECTS),
    },
)


class Rollback(Exception):
    pass


@dataclass(frozen=True)
class Books:
    world: World
    acme: CreditAccount
    globex: CreditAccount


@pytest.fixture
def books(world: World, acme: CreditAccount, globex: CreditAccount) -> Books:
    return Books(world, acme, globex)


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    usage=events,
    period=periods,
    chosen=filters,
    viewer=st.sampled_from(["owner", "billing_manager", "member"]),
    weeks_summed=st.booleans(),
    late=st.lists(event, max_size=8),
)
# Long periods (a bar per week) over whole weeks, their weekly rows summed or not, with late
# records in summed weeks: the cases the weekly rollups change, always tried.
@example(
    usage=[Event("owner", 0, "", 200, 0, 1_000, 10), Event("member", 1, "alpha", 30, 9, 2_000, 20)],
    period={"period": "all"},
    chosen={},
    viewer="owner",
    weeks_summed=False,
    late=[],
)
@example(
    usage=[Event("owner", 0, "", 200, 0, 1_000, 10), Event("member", 1, "alpha", 30, 9, 2_000, 20)],
    period={"period": "all"},
    chosen={"project": "alpha"},
    viewer="member",
    weeks_summed=True,
    late=[Event("member", 2, "alpha", 201, 50, 3_000, 30), Event("admin", 0, "", 30, 7, 4, 1)],
)
@example(
    usage=[Event("admin", 2, "beta", 120, 5, 7_000, 70), Event("admin", 2, "beta", 10, 5, 1, 1)],
    period={
        "period": "custom",
        "start": (TODAY - timedelta(days=300)).isoformat(),
        "end": (TODAY - timedelta(days=6)).isoformat(),
    },
    chosen={"member": "admin"},
    viewer="billing_manager",
    weeks_summed=True,
    late=[Event("admin", 2, "beta", 121, 5, 5_000, 50)],
)
def test_page_totals_equal_the_ledger(
    books: Books,
    *,
    usage: list[Event],
    period: dict[str, str],
    chosen: dict[str, object],
    viewer: str,
    weeks_summed: bool,
    late: list[Event],
) -> None:
    try:
        with transaction.atomic():
            record(books, usage)
            if weeks_summed:
                # Every week before the database's current one ends up summed (the tests' days
                # are long past by its clock); records after that land in summed weeks.
                usage_weeks_sum()
                record(books, late)
            check(books, period=period, chosen=chosen, viewer=viewer)
            raise Rollback
    except Rollback:
        pass


def record(books: Books, usage: list[Event]) -> None:
    world, acme = books.world, books.acme
    for event in usage:
        provider, model = MODELS[event.model]
        at = (
            NOW.replace(hour=0, minute=0, second=0)
            - timedelta(days=event.days_ago)
            + timedelta(seconds=event.seconds)
        )
        at = min(at, NOW)
        spend(
            acme,
            world.person(event.person),
            cost=event.cost,
            provider=provider,
            model=model,
            project=event.project,
            input_tokens=event.tokens,
            at=at,
        )
    # The neighbour spends on the same days, models and projects: never on Acme's pages.
    spend(
        books.globex, world.outsider, cost=123_456_789, at=NOW - timedelta(days=1), project="alpha"
    )


def ledger_sums(
    books: Books, applied: UsageFilters, shown: Period, *, only: User | None
) -> dict[str, int]:
    """The ledger's usage entries of Acme under the filters the page applied."""
    entries = LedgerEntry.objects.filter(account=books.acme, kind=LedgerEntry.Kind.USAGE)
    if only is not None:
        entries = entries.filter(usage__user=only)
    if applied.member is not None:
        entries = entries.filter(usage__user_id=applied.member)
    if applied.model:
        entries = entries.filter(usage__model=applied.model)
    if applied.project is not None:
        entries = entries.filter(usage__project=applied.project)
    entries = entries.filter(created_at__date__gte=shown.start, created_at__date__lte=shown.end)
    return entries.aggregate(
        cost=Sum("amount"), requests=Count("id"), tokens=Sum("usage__input_tokens")
    )


def check(books: Books, *, period: dict[str, str], chosen: dict[str, object], viewer: str) -> None:
    world = books.world
    person = world.person(viewer)
    params = dict(period)
    if "member" in chosen:
        params["member"] = str(world.person(str(chosen["member"])).pk)
    if "model" in chosen:
        params["model"] = MODELS[int(str(chosen["model"]))][1]
    if "project" in chosen:
        params["project"] = str(chosen["project"]) or NO_PROJECT

    url = reverse("org_usage", args=[world.org.pk])
    client = client_for(person)
    response = client.get(f"{url}?{urlencode(params)}")
    assert response.status_code == 200
    context = response.context
    shown = context["period"]
    applied = context["filters"]
    # What the page applied: a filter that names nothing the viewer may see is dropped (with a
    # message), and a member sees only their own usage whatever was asked.
    if not context["messages"]:
        assert applied.member == (int(params["member"]) if "member" in params else None)
        assert applied.model == params.get("model", "")
        assert applied.project == chosen.get("project")
    expected = ledger_sums(books, applied, shown, only=person if viewer == "member" else None)
    cost = -(expected["cost"] or 0)

    totals = context["report"].totals
    assert totals.cost == cost
    assert totals.requests == expected["requests"]
    assert totals.input_tokens == (expected["tokens"] or 0)
    assert f"<strong>{dollars(cost)}</strong>" in response.content.decode()
    for table in context["tables"]:
        assert sum(row.line.cost for row in table.rows) == cost
    assert sum(column.total for column in context["spend_chart"].columns) == cost
    if viewer == "member":
        assert {line.key for line in context["report"].by_member} <= {str(person.pk)}
    if not context["messages"]:
        rows = csv_rows(
            client, reverse("org_usage_csv", args=[world.org.pk]) + f"?{urlencode(params)}"
        )
        assert sum(int(row["cost_microdollars"]) for row in rows) == cost
        assert sum(int(row["requests"]) for row in rows) == expected["requests"]
        if viewer == "member":
            assert {row["member_email"] for row in rows} <= {person.email}
    assert shown.end <= TODAY
    assert isinstance(shown.start, date)
