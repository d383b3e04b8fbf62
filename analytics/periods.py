"""The periods of the Usage pages, in whole UTC days, and the period each is compared with."""

from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

# Custom ranges start no earlier than this; nothing was billed before.
EARLIEST = date(2020, 1, 1)
# Up to this many days a chart shows one bar per day; up to MAX_WEEKS_SPAN one per week; beyond,
# one per month, so that a chart never has more than about a hundred bars.
MAX_DAYS_SPAN = 92
MAX_WEEKS_SPAN = 731


class PeriodKind(StrEnum):
    LAST_7_DAYS = "7d"
    LAST_30_DAYS = "30d"
    THIS_MONTH = "month"
    LAST_MONTH = "last-month"
    THIS_YEAR = "year"
    ALL_TIME = "all"
    CUSTOM = "custom"


LABELS: dict[PeriodKind, str] = {
    PeriodKind.LAST_7_DAYS: "Last 7 days",
    PeriodKind.LAST_30_DAYS: "Last 30 days",
    PeriodKind.THIS_MONTH: "This month",
    PeriodKind.LAST_MONTH: "Last month",
    PeriodKind.THIS_YEAR: "This year",
    PeriodKind.ALL_TIME: "All time",
    PeriodKind.CUSTOM: "Custom range",
}
DEFAULT_PERIOD = PeriodKind.LAST_30_DAYS


class Bucket(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@dataclass(frozen=True)
class Period:
    """Days `start` to `end`, both included (UTC), and the span it is compared with."""

    kind: PeriodKind
    start: date
    end: date
    previous: tuple[date, date] | None

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def label(self) -> str:
        if self.kind == PeriodKind.CUSTOM:
            return f"{self.start:%-d %b %Y} – {self.end:%-d %b %Y}"
        return LABELS[self.kind]

    @property
    def previous_label(self) -> str:
        if self.previous is None:
            return ""
        start, end = self.previous
        if start == end:
            return f"{start:%-d %b %Y}"
        return f"{start:%-d %b %Y} – {end:%-d %b %Y}"

    @property
    def bucket(self) -> Bucket:
        if self.days <= MAX_DAYS_SPAN:
            return Bucket.DAY
        if self.days <= MAX_WEEKS_SPAN:
            return Bucket.WEEK
        return Bucket.MONTH


def bucket_start(day: date, bucket: Bucket) -> date:
    """The first day of the chart bar (day, week or month) that holds `day`."""
    if bucket == Bucket.WEEK:
        return day - timedelta(days=day.weekday())
    if bucket == Bucket.MONTH:
        return day.replace(day=1)
    return day


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _previous_month_start(day: date) -> date:
    return _month_start(_month_start(day) - timedelta(days=1))


def _same_length_before(start: date, end: date) -> tuple[date, date]:
    length = end - start
    previous_end = start - timedelta(days=1)
    return previous_end - length, previous_end


def _clamped(year: int, month: int, day: int) -> date:
    """The date, or the month's last day when the month is shorter (29 Feb → 28 Feb)."""
    while True:
        try:
            return date(year, month, day)
        except ValueError:
            day -= 1


def period_resolve(
    kind: PeriodKind,
    *,
    today: date,
    start: date | None = None,
    end: date | None = None,
    first_day: date | None = None,
) -> Period:
    """The days of a period. Rolling windows compare with the same number of days just before;
    "this month" and "this year" with the same days of the month or year before; "last month"
    with the month before it; all time with nothing. `first_day` (the first day with usage)
    starts "all time"; `start` and `end` are the custom range's, already validated."""
    if kind in (PeriodKind.LAST_7_DAYS, PeriodKind.LAST_30_DAYS):
        length = 7 if kind == PeriodKind.LAST_7_DAYS else 30
        first = today - timedelta(days=length - 1)
        return Period(kind, first, today, _same_length_before(first, today))
    if kind == PeriodKind.THIS_MONTH:
        first = _month_start(today)
        previous_start = _previous_month_start(today)
        previous_end = _clamped(previous_start.year, previous_start.month, today.day)
        return Period(kind, first, today, (previous_start, previous_end))
    if kind == PeriodKind.LAST_MONTH:
        first = _previous_month_start(today)
        last = _month_start(today) - timedelta(days=1)
        return Period(kind, first, last, (_previous_month_start(first), first - timedelta(days=1)))
    if kind == PeriodKind.THIS_YEAR:
        first = date(today.year, 1, 1)
        previous_end = _clamped(today.year - 1, today.month, today.day)
        return Period(kind, first, today, (date(today.year - 1, 1, 1), previous_end))
    if kind == PeriodKind.ALL_TIME:
        return Period(kind, min(first_day or today, today), today, None)
    assert start is not None
    assert end is not None
    return Period(kind, start, end, _same_length_before(start, end))


# Weeks cut at the first of each month: the unit of the weekly rollups. Each lies in one week
# and one month, so a chart's weeks and months are both sums of whole ones.


def week_start(day: date) -> date:
    """The first day of the rollup week holding `day`: its Monday, or the first of its month
    when the month began later in that week."""
    return max(day - timedelta(days=day.weekday()), day.replace(day=1))


def week_last(day: date) -> date:
    """The last day of the rollup week holding `day`: its Sunday, or the month's last day."""
    sunday = day + timedelta(days=6 - day.weekday())
    month_last = (day.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    return min(sunday, month_last)


@dataclass(frozen=True)
class Span:
    """Days `first` to `last` of one rollup week; `whole` when they are all of its days (then
    its weekly rollup can stand for them)."""

    first: date
    last: date
    whole: bool


def spans(start: date, end: date) -> list[Span]:
    """Days `start` to `end` (both included) cut into rollup weeks, in order."""
    result = []
    first = start
    while first <= end:
        last = min(week_last(first), end)
        result.append(Span(first, last, first == week_start(first) and last == week_last(first)))
        first = last + timedelta(days=1)
    return result
