import itertools
from datetime import date, timedelta

import pytest
from django.http import QueryDict
from hypothesis import given
from hypothesis import strategies as st

from analytics.filters import NO_PROJECT, Stack, Table, UsageFilters, filters_parse
from analytics.periods import (
    Bucket,
    PeriodKind,
    bucket_start,
    period_resolve,
    spans,
    week_last,
    week_start,
)
from analytics.templatetags.usage_money import dollars


@pytest.mark.parametrize(
    ("kind", "today", "span", "previous"),
    [
        (
            "7d",
            date(2026, 3, 15),
            (date(2026, 3, 9), date(2026, 3, 15)),
            (date(2026, 3, 2), date(2026, 3, 8)),
        ),
        (
            "30d",
            date(2026, 3, 15),
            (date(2026, 2, 14), date(2026, 3, 15)),
            (date(2026, 1, 15), date(2026, 2, 13)),
        ),
        (
            "month",
            date(2026, 3, 31),
            (date(2026, 3, 1), date(2026, 3, 31)),
            (date(2026, 2, 1), date(2026, 2, 28)),
        ),
        (
            "month",
            date(2026, 1, 10),
            (date(2026, 1, 1), date(2026, 1, 10)),
            (date(2025, 12, 1), date(2025, 12, 10)),
        ),
        (
            "last-month",
            date(2026, 3, 15),
            (date(2026, 2, 1), date(2026, 2, 28)),
            (date(2026, 1, 1), date(2026, 1, 31)),
        ),
        (
            "last-month",
            date(2026, 1, 5),
            (date(2025, 12, 1), date(2025, 12, 31)),
            (date(2025, 11, 1), date(2025, 11, 30)),
        ),
        (
            "year",
            date(2028, 2, 29),
            (date(2028, 1, 1), date(2028, 2, 29)),
            (date(2027, 1, 1), date(2027, 2, 28)),
        ),
    ],
)
def test_it_resolves_each_period_and_its_comparison(
    kind: str, today: date, span: tuple[date, date], previous: tuple[date, date]
) -> None:
    period = period_resolve(PeriodKind(kind), today=today)
    assert (period.start, period.end) == span
    assert period.previous == previous


def test_all_time_starts_at_the_first_usage_and_compares_with_nothing() -> None:
    period = period_resolve(
        PeriodKind.ALL_TIME, today=date(2026, 3, 15), first_day=date(2025, 6, 1)
    )
    assert (period.start, period.end, period.previous) == (
        date(2025, 6, 1),
        date(2026, 3, 15),
        None,
    )
    assert period.bucket == Bucket.WEEK
    empty = period_resolve(PeriodKind.ALL_TIME, today=date(2026, 3, 15))
    assert (empty.start, empty.end) == (date(2026, 3, 15), date(2026, 3, 15))


def test_a_custom_range_compares_with_as_many_days_before() -> None:
    period = period_resolve(
        PeriodKind.CUSTOM, today=date(2026, 3, 15), start=date(2026, 3, 1), end=date(2026, 3, 10)
    )
    assert period.previous == (date(2026, 2, 19), date(2026, 2, 28))
    assert period.label == "1 Mar 2026 – 10 Mar 2026"


def test_the_query_string_round_trips() -> None:
    filters = UsageFilters(
        period=PeriodKind.CUSTOM,
        start=date(2026, 1, 2),
        end=date(2026, 2, 3),
        member=7,
        provider="openai",
        model="gpt-5",
        project="",
        stack=Stack.MEMBER,
        sorts={Table.MODEL: "name"},
    )
    query = QueryDict(filters.querystring().removeprefix("?"))
    assert query["project"] == NO_PROJECT
    parsed = filters_parse(query, today=date(2026, 3, 15))
    assert parsed.errors == []
    assert parsed.filters == filters
    assert UsageFilters().querystring() == ""


def test_a_project_keeps_its_spaces() -> None:
    parsed = filters_parse(QueryDict("project=%20spaced%20"), today=date(2026, 3, 15))
    assert parsed.filters.project == " spaced "


@pytest.mark.parametrize(
    ("microdollars", "shown"),
    [
        (0, "$0.00"),
        (87_639_667, "$87.64"),
        (87_634_999, "$87.63"),
        (5_000, "$0.005"),
        (450, "$0.00045"),
        (9_999, "$0.009999"),
        (1_234_505_000, "$1,234.51"),
        (-25_000, "-$0.03"),
    ],
)
def test_spend_is_shown_to_the_cent_and_small_amounts_in_full(
    microdollars: int, shown: str
) -> None:

    assert dollars(microdollars) == shown


# Rollup weeks


@pytest.mark.parametrize(
    ("day", "start", "last"),
    [
        (date(2026, 3, 11), date(2026, 3, 9), date(2026, 3, 15)),  # a Wednesday
        (date(2026, 3, 31), date(2026, 3, 30), date(2026, 3, 31)),  # a week cut by April
        (date(2026, 4, 2), date(2026, 4, 1), date(2026, 4, 5)),  # ... and its April part
        (date(2026, 2, 1), date(2026, 2, 1), date(2026, 2, 1)),  # a Sunday the 1st: one day
        (date(2024, 2, 29), date(2024, 2, 26), date(2024, 2, 29)),
    ],
)
def test_a_rollup_week_is_a_week_cut_at_the_first_of_a_month(
    day: date, start: date, last: date
) -> None:
    assert (week_start(day), week_last(day)) == (start, last)


@given(
    start=st.dates(date(2020, 1, 1), date(2031, 12, 31)),
    length=st.integers(0, 800),
)
def test_spans_cut_a_range_into_rollup_weeks_in_order(start: date, length: int) -> None:
    end = start + timedelta(days=length)
    parts = spans(start, end)
    assert parts[0].first == start
    assert parts[-1].last == end
    for part, following in itertools.pairwise(parts):
        assert following.first == part.last + timedelta(days=1)
    for part in parts:
        assert week_start(part.first) == week_start(part.last)
        whole = part.first == week_start(part.first) and part.last == week_last(part.first)
        assert part.whole == whole
        # A week lies in one week and one month, so a chart's buckets sum whole weeks.
        assert bucket_start(part.first, Bucket.WEEK) == bucket_start(part.last, Bucket.WEEK)
        assert bucket_start(part.first, Bucket.MONTH) == bucket_start(part.last, Bucket.MONTH)
