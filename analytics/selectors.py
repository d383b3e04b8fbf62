"""Reads for the Usage pages, from the rollups only and always scoped to one credit account (an
organization's or a person's) and, for members, to the member's own rows. A page costs the same
few queries whatever the number of members or events: one pass over the period's rollups answers
every chart and table (GROUPING SETS), one more the previous period. Whole weeks that have ended
are read from their weekly rows, every other day from the daily rows (`_rollup_rows`), so a year
reads about a seventh of a year's daily rows."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Min, QuerySet, Sum

from accounts.models import User
from analytics.filters import UsageFilters
from analytics.models import DailyUsage, UsageSettings, UsageWeek, WeeklyUsage
from analytics.periods import Bucket, Period, PeriodKind, Span, bucket_start, period_resolve, spans
from credits.models import CreditAccount, ModelPrice
from organizations.models import Membership, Organization

COUNTS = ("requests", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
# What the pages show of each group (the CSV has every count): summing fewer columns is most of
# a long period's cost in the database.
FIGURES = ("requests", "input_tokens", "output_tokens", "cost")


@dataclass(frozen=True)
class UsageScope:
    """Whose usage a page shows and to whom. `only_user_id` is set for viewers who may see
    nothing but their own rows; every read below applies it."""

    account_id: int | None
    organization: Organization | None
    viewer: User
    sees_everyone: bool
    members_see_totals: bool = False
    can_manage_visibility: bool = False

    @property
    def only_user_id(self) -> int | None:
        return None if self.sees_everyone else self.viewer.pk

    @property
    def shows_org_totals(self) -> bool:
        """A member of an organization that lets members see its totals."""
        return self.organization is not None and not self.sees_everyone and self.members_see_totals


def account_id_of(
    *, organization: Organization | None = None, user: User | None = None
) -> int | None:
    """The credit account whose usage a page shows, without creating one on a read."""
    accounts = CreditAccount.objects.all()
    if organization is not None:
        accounts = accounts.filter(organization=organization)
    else:
        assert user is not None
        accounts = accounts.filter(user=user)
    return accounts.values_list("pk", flat=True).first()


def members_see_totals(*, organization: Organization) -> bool:
    return bool(
        UsageSettings.objects.filter(organization=organization)
        .values_list("members_see_totals", flat=True)
        .first()
    )


# Filter values that need the database to be judged


def known_models() -> list[tuple[str, str]]:
    """(provider, model) pairs a filter may name: the price catalogue, which every recorded
    request was priced from."""
    return list(
        ModelPrice.objects.values_list("provider", "model_id").distinct().order_by("provider")
    )


def _scoped(scope: UsageScope) -> QuerySet[DailyUsage]:
    rows = DailyUsage.objects.filter(account_id=scope.account_id)
    if scope.only_user_id is not None:
        rows = rows.filter(user_id=scope.only_user_id)
    return rows


def member_is_known(*, scope: UsageScope, user_id: int) -> bool:
    """A current member of the organization, or someone whose usage the account holds (a
    former member). Never anyone else: another organization's people are unknown here."""
    if scope.organization is not None and (
        Membership.objects.filter(organization=scope.organization, user_id=user_id).exists()
    ):
        return True
    return scope.account_id is not None and _scoped(scope).filter(user_id=user_id).exists()


def model_is_used(*, scope: UsageScope, provider: str, model: str) -> bool:
    if scope.account_id is None:
        return False
    rows = _scoped(scope)
    if provider:
        rows = rows.filter(provider=provider)
    if model:
        rows = rows.filter(model=model)
    return bool(rows.exists())


def project_is_used(*, scope: UsageScope, project: str) -> bool:
    return scope.account_id is not None and bool(_scoped(scope).filter(project=project).exists())


def filters_checked(*, scope: UsageScope, filters: UsageFilters, errors: list[str]) -> UsageFilters:
    """Drop filter values that name something this page does not hold, saying why. A member
    (or the personal page) asking for someone else gets their own usage, never the other's."""
    changes: dict[str, Any] = {}
    if filters.member is not None:
        if scope.only_user_id is not None and filters.member != scope.only_user_id:
            errors.append("You can see only your own usage here; showing yours.")
            changes["member"] = None
        elif scope.only_user_id is None and not member_is_known(
            scope=scope, user_id=filters.member
        ):
            errors.append("That member is not in this organization; showing everyone.")
            changes["member"] = None
    if filters.provider or filters.model:
        catalogue = known_models()
        if filters.provider and not (
            any(p == filters.provider for p, _ in catalogue)
            or model_is_used(scope=scope, provider=filters.provider, model="")
        ):
            errors.append(f"There is no provider “{filters.provider}”; showing every provider.")
            changes["provider"] = ""
        if filters.model and not (
            any(m == filters.model for _, m in catalogue)
            or model_is_used(scope=scope, provider="", model=filters.model)
        ):
            errors.append(f"There is no model “{filters.model}”; showing every model.")
            changes["model"] = ""
    if filters.project is not None and not project_is_used(scope=scope, project=filters.project):
        name = filters.project or "(no project)"
        errors.append(f"No usage was ever recorded for project “{name}”; showing every project.")
        changes["project"] = None
    return replace(filters, **changes) if changes else filters


def first_day(*, scope: UsageScope) -> date | None:
    if scope.account_id is None:
        return None
    result: date | None = _scoped(scope).aggregate(first=Min("day"))["first"]
    return result


def period_of(*, scope: UsageScope, filters: UsageFilters, today: date) -> Period:
    return period_resolve(
        filters.period,
        today=today,
        start=filters.start,
        end=filters.end,
        first_day=first_day(scope=scope) if filters.period == PeriodKind.ALL_TIME else None,
    )


# The report


@dataclass
class Figures:
    """Sums over some rollup rows, of what the pages show (`FIGURES`, in this order)."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: int = 0  # microdollars

    @property
    def average_cost(self) -> int | None:
        """Microdollars per request, rounded half up."""
        if not self.requests:
            return None
        return (2 * self.cost + self.requests) // (2 * self.requests)

    def add(self, other: "Figures") -> None:
        for name in FIGURES:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Totals(Figures):
    members: int = 0  # distinct people with usage


@dataclass
class Line(Figures):
    """One row of a breakdown: a member, model, provider or project."""

    key: str = ""  # the filter value that shows just this row's usage
    label: str = ""
    detail: str = ""  # e.g. the member's email, the model's provider


@dataclass
class Person:
    user_id: int | None
    name: str
    email: str
    is_member: bool


@dataclass
class UsageReport:
    period: Period
    totals: Totals
    previous: Totals | None
    org_totals: Totals | None
    org_previous: Totals | None
    # Spend per bucket (day, week or month) and series (a model key or a member id).
    buckets: list[date]
    spend: dict[tuple[date, str], int]
    series_labels: dict[str, str]
    by_member: list[Line]
    by_model: list[Line]
    by_provider: list[Line]
    by_project: list[Line]
    # Values offered by the filter menus.
    member_options: list[Person] = field(default_factory=list)
    model_options: list[tuple[str, str]] = field(default_factory=list)
    provider_options: list[str] = field(default_factory=list)
    project_options: list[str] = field(default_factory=list)


# GROUPING(day, user_id, provider, model, project): a set bit is a column summed over.
_G_DAY_MODEL = 0b01001
_G_DAY_MEMBER = 0b00111
_G_MEMBER = 0b10111
_G_MODEL = 0b11001
_G_PROJECT = 0b11110

_DAILY = DailyUsage._meta.db_table
_WEEKLY = WeeklyUsage._meta.db_table
_WEEKS = UsageWeek._meta.db_table
_COLUMNS = ", ".join(("user_id", "provider", "model", "project", *FIGURES))
# bigint, not numeric: plain ints to Python (microdollar totals stay far below 2⁶³).
_SUMS = ", ".join(f"SUM({column})::bigint" for column in FIGURES)

Conditions = list[tuple[str, Any]]


def _conditions(scope: UsageScope, filters: UsageFilters) -> Conditions:
    """The columns a page's rows must match: the viewer's own rows, then the filters."""
    conditions = [
        ("user_id", scope.only_user_id),
        ("user_id", filters.member),
        ("provider", filters.provider or None),
        ("model", filters.model or None),
        ("project", filters.project),
    ]
    return [(column, value) for column, value in conditions if value is not None]


def _rollup_rows(
    account_id: int, conditions: Conditions, start: date, end: date, *, by_day: bool = False
) -> tuple[str, list[Any]]:
    """SQL (and its parameters) for the rollup rows of one account matching `conditions` that
    hold days `start` to `end`: `day`, the key and the `FIGURES`. A whole rollup week whose
    weekly rows are summed and up to date is read from them (its first day as `day`); every
    other day from the daily rows, one index range per week. `by_day` reads daily rows only
    (charts with a bar per day). One statement, so one snapshot: a week summed, or marked
    stale by a late record, meanwhile is neither missed nor counted twice."""
    match = "".join(f" AND {column} = %s" for column, _ in conditions)
    values = [value for _, value in conditions]
    parts = [Span(start, end, whole=False)] if by_day else spans(start, end)
    sql = f"""
        SELECT rows.* FROM unnest(%s::date[], %s::date[], %s::boolean[]) AS span(first, last, whole)
        LEFT JOIN {_WEEKS} AS week
            ON span.whole AND week.account_id = %s AND week.start = span.first AND week.summed
        CROSS JOIN LATERAL (
            SELECT start AS day, {_COLUMNS} FROM {_WEEKLY}
            WHERE week.id IS NOT NULL AND account_id = %s AND start = span.first{match}
            UNION ALL
            SELECT day, {_COLUMNS} FROM {_DAILY}
            WHERE week.id IS NULL AND account_id = %s AND day BETWEEN span.first AND span.last
                {match}
        ) AS rows
    """  # noqa: S608 - every value is a parameter; the SQL fragments are this module's own
    params = [
        [part.first for part in parts],
        [part.last for part in parts],
        [part.whole for part in parts],
        account_id,
        account_id,
        *values,
        account_id,
        *values,
    ]
    return sql, params


def _grouped_rows(
    scope: UsageScope, filters: UsageFilters, period: Period
) -> list[tuple[Any, ...]]:
    """One pass over the period's rollup rows in scope and under the filters (through the
    index of the member filter when there is one), grouped every way the page needs at once.
    The chart's set is grouped by the rows' own day (a weekly row's first day): few groups,
    put into the chart's buckets by `_Grouped`."""
    assert scope.account_id is not None
    source, params = _rollup_rows(
        scope.account_id,
        _conditions(scope, filters),
        period.start,
        period.end,
        by_day=period.bucket == Bucket.DAY,
    )
    # Three grouping sets, the fewest that answer everything: the chart's set also gives its
    # series' totals, and any complete set gives the page's totals.
    sets = (
        "(day, user_id), (provider, model)"
        if _stack_by_member(scope, filters)
        else "(day, provider, model), (user_id)"
    )
    sql = f"""
        SELECT GROUPING(day, user_id, provider, model, project), day, user_id, provider, model,
               project, {_SUMS}
        FROM ({source}) AS rows
        GROUP BY GROUPING SETS ({sets}, (project))
    """  # noqa: S608 - every value is a parameter; the SQL fragments are this module's own
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


MAX_PROJECT_OPTIONS = 500
_PROJECTS_SQL = f"""
    WITH RECURSIVE projects AS (
        (SELECT project FROM {DailyUsage._meta.db_table} WHERE account_id = %s
         ORDER BY project LIMIT 1)
        UNION ALL
        SELECT (SELECT later.project FROM {DailyUsage._meta.db_table} AS later
                WHERE later.account_id = %s AND later.project > projects.project
                ORDER BY later.project LIMIT 1)
        FROM projects WHERE projects.project IS NOT NULL
    )
    SELECT project FROM projects WHERE project IS NOT NULL LIMIT {MAX_PROJECT_OPTIONS}
"""  # noqa: S608 - the table name is the model's


def projects_of(*, scope: UsageScope) -> list[str]:
    """Every project the account ever recorded, one index probe per project (a loose index
    scan) rather than a scan of the account's rows."""
    if scope.account_id is None:
        return []
    with connection.cursor() as cursor:
        cursor.execute(_PROJECTS_SQL, [scope.account_id, scope.account_id])
        return [row[0] for row in cursor.fetchall()]


def _stack_by_member(scope: UsageScope, filters: UsageFilters) -> bool:
    return scope.sees_everyone and scope.organization is not None and filters.stack == "member"


def _totals(account_id: int, conditions: Conditions, start: date, end: date) -> Totals:
    """Sums over days `start` to `end` and the number of people, from per-person sums (cheaper
    than COUNT(DISTINCT))."""
    source, params = _rollup_rows(account_id, conditions, start, end)
    sql = f"SELECT user_id, {_SUMS} FROM ({source}) AS rows GROUP BY user_id"  # noqa: S608
    totals = Totals()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for user_id, *sums in cursor.fetchall():
            totals.add(Figures(*sums))
            totals.members += user_id is not None
    return totals


def _previous_totals(scope: UsageScope, filters: UsageFilters, period: Period) -> Totals | None:
    if period.previous is None or scope.account_id is None:
        return None
    return _totals(scope.account_id, _conditions(scope, filters), *period.previous)


def _org_totals(scope: UsageScope, period: Period) -> tuple[Totals | None, Totals | None]:
    """The whole organization's figures for the period (and the previous one), for members of
    organizations that show them. Totals only: no row says who spent what."""
    if not scope.shows_org_totals or scope.account_id is None:
        return None, None
    current = _totals(scope.account_id, [], period.start, period.end)
    previous = _totals(scope.account_id, [], *period.previous) if period.previous else None
    return current, previous


def _people(scope: UsageScope, user_ids: set[int]) -> dict[int, Person]:
    """Names of the organization's members and of anyone else with usage here (former
    members), in at most two queries."""
    people: dict[int, Person] = {}
    if scope.organization is not None and scope.sees_everyone:
        for membership in Membership.objects.filter(organization=scope.organization).select_related(
            "user"
        ):
            user = membership.user
            people[user.pk] = Person(user.pk, user.get_full_name(), user.email, is_member=True)
    else:
        viewer = scope.viewer
        people[viewer.pk] = Person(viewer.pk, viewer.get_full_name(), viewer.email, True)
    missing = user_ids - set(people)
    if missing:
        for user in User.objects.filter(pk__in=missing).only("pk", "email", "name"):
            people[user.pk] = Person(user.pk, user.get_full_name(), user.email, is_member=False)
    return people


def _person_label(people: dict[int, Person], user_id: int | None) -> tuple[str, str]:
    if user_id is None or user_id not in people:
        return "Deleted user", ""
    person = people[user_id]
    detail = person.email if person.is_member else f"{person.email} (no longer a member)"
    return person.name, detail


def _buckets(period: Period) -> list[date]:
    days: list[date] = []
    if period.bucket == Bucket.DAY:
        return [period.start + timedelta(days=n) for n in range(period.days)]
    current = bucket_start(period.start, period.bucket)
    while current <= period.end:
        days.append(current)
        if period.bucket == Bucket.WEEK:
            current += timedelta(days=7)
        else:
            current = (current.replace(day=28) + timedelta(days=4)).replace(day=1)
    return days


def model_key(provider: str, model: str) -> str:
    return f"{provider}/{model}"


def _sum_into(sums: dict[Any, list[int]], key: Any, values: list[int]) -> None:
    into = sums.get(key)
    if into is None:
        sums[key] = values
    else:
        for index, value in enumerate(values):
            into[index] += value


class _Grouped:
    """The rows of `_grouped_rows`, sorted out by grouping set; sums as plain lists while the
    rows come (thousands of them for a long period stacked by member), Figures at the end."""

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket
        self.members: dict[int | None, list[int]] = {}
        self.models: dict[tuple[str, str], list[int]] = {}
        self.projects: dict[str, list[int]] = {}
        self.spend: dict[tuple[date, str], int] = {}

    def add(self, row: tuple[Any, ...]) -> None:
        grouping, day, user_id, provider, model, project, *sums = row
        if grouping == _G_MEMBER:
            self.members[user_id] = sums
        elif grouping == _G_MODEL:
            self.models[(provider, model)] = sums
        elif grouping == _G_PROJECT:
            self.projects[project] = sums
        else:
            if grouping == _G_DAY_MODEL:
                _sum_into(self.models, (provider, model), sums)
                series = model_key(provider, model)
            else:
                _sum_into(self.members, user_id, sums)
                series = str(user_id)
            key = (bucket_start(day, self.bucket), series)
            self.spend[key] = self.spend.get(key, 0) + sums[-1]

    @property
    def by_member(self) -> dict[int | None, Figures]:
        return {key: Figures(*sums) for key, sums in self.members.items()}

    @property
    def by_model(self) -> dict[tuple[str, str], Figures]:
        return {key: Figures(*sums) for key, sums in self.models.items()}

    @property
    def by_project(self) -> dict[str, Figures]:
        return {key: Figures(*sums) for key, sums in self.projects.items()}

    @property
    def totals(self) -> Totals:
        totals = Totals()
        for figures in self.by_project.values():
            totals.add(figures)
        totals.members = sum(1 for user_id in self.members if user_id is not None)
        return totals


@contextmanager
def _without_jit() -> Iterator[None]:
    """The page's reads in one transaction with JIT compilation off. The planner cannot know
    how many rows each week's scan returns, and its estimate for a long period passes
    `jit_above_cost`: compiling then costs about 40 ms, more than the query itself."""
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
        yield


def usage_report(*, scope: UsageScope, filters: UsageFilters, period: Period) -> UsageReport:
    """Everything a Usage page shows, from the rollups of one account."""
    with _without_jit():
        return _report(scope, filters, period)


def _report(scope: UsageScope, filters: UsageFilters, period: Period) -> UsageReport:
    grouped = _Grouped(period.bucket)
    for row in _grouped_rows(scope, filters, period) if scope.account_id is not None else []:
        grouped.add(row)
    totals = grouped.totals
    by_member, by_model, by_project = grouped.by_member, grouped.by_model, grouped.by_project

    ids = {i for i in by_member if i is not None}
    if filters.member is not None:
        ids.add(filters.member)
    people = _people(scope, ids)

    member_lines = []
    for user_id, figures in by_member.items():
        name, detail = _person_label(people, user_id)
        key = "" if user_id is None else str(user_id)
        member_lines.append(_line(figures, key=key, label=name, detail=detail))
    providers: dict[str, Figures] = {}
    for (provider, _), figures in by_model.items():
        providers.setdefault(provider, Figures()).add(figures)

    if _stack_by_member(scope, filters):
        series_labels = {str(i): _person_label(people, i)[0] for i in by_member}
    else:
        series_labels = {model_key(p, m): m for p, m in by_model}

    org_totals, org_previous = _org_totals(scope, period)
    # The filter menus: the catalogue's models and every project, so that one filter can be
    # swapped for another without clearing it first (a member's menu: their own projects).
    model_options = {*known_models(), *by_model}
    if filters.model:
        model_options.add((filters.provider, filters.model))
    project_options = set(by_project)
    if scope.sees_everyone:
        project_options.update(projects_of(scope=scope))
    if filters.project is not None:
        project_options.add(filters.project)
    return UsageReport(
        period=period,
        totals=totals,
        previous=_previous_totals(scope, filters, period),
        org_totals=org_totals,
        org_previous=org_previous,
        buckets=_buckets(period),
        spend=grouped.spend,
        series_labels=series_labels,
        by_member=member_lines,
        by_model=[
            _line(figures, key=model, label=model, detail=provider)
            for (provider, model), figures in by_model.items()
        ],
        by_provider=[_line(f, key=p, label=p) for p, f in providers.items()],
        by_project=[
            _line(figures, key=project, label=project or "(no project)")
            for project, figures in by_project.items()
        ],
        # Everyone in `people`: the members, and former members with usage in the period.
        member_options=sorted(people.values(), key=lambda p: (p.name.lower(), p.email))
        if scope.sees_everyone and scope.organization is not None
        else [],
        model_options=sorted(model_options),
        provider_options=sorted({p for p, _ in model_options if p}),
        project_options=sorted(project_options),
    )


def _line(figures: Figures, *, key: str, label: str, detail: str = "") -> Line:
    return Line(**vars(figures), key=key, label=label, detail=detail)


# The CSV export

CSV_COLUMNS = (
    "date",
    "member_id",
    "member_email",
    "provider",
    "model",
    "project",
    "requests",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_microdollars",
)


def usage_rows(
    *, scope: UsageScope, filters: UsageFilters, period: Period
) -> Iterator[tuple[Any, ...]]:
    """The filtered rollup rows (day × member × model × project), in the order of the rollups'
    unique index, read through a server-side cursor: an export of any size streams."""
    if scope.account_id is None:
        return iter(())
    rows = DailyUsage.objects.filter(
        account_id=scope.account_id, day__range=(period.start, period.end)
    )
    for column, value in _conditions(scope, filters):
        rows = rows.filter(**{column: value})
    return (
        rows.order_by("day", "user_id", "provider", "model", "project")
        .values_list(
            "day",
            "user_id",
            "user__email",
            "provider",
            "model",
            "project",
            *COUNTS,
            "cost",
        )
        .iterator(chunk_size=5000)
    )


# Spend for the dashboard's overview


def spend_total(
    *, account_id: int | None, start: date, end: date, user_id: int | None = None
) -> int:
    """Microdollars spent from the account on days `start` to `end` (UTC, both included), by
    everyone or by one person. One indexed sum over the rollups."""
    if account_id is None:
        return 0
    rows = DailyUsage.objects.filter(account_id=account_id, day__range=(start, end))
    if user_id is not None:
        rows = rows.filter(user_id=user_id)
    total: int | None = rows.aggregate(total=Sum("cost"))["total"]
    return int(total or 0)


RUN_OUT_HORIZON_DAYS = 3650


@dataclass(frozen=True)
class SpendPace:
    """What was spent over the last `days` UTC days (today included, as the Usage tab's "Last 7
    days"), and when a balance would run out at that pace."""

    days: int
    spent: int  # microdollars
    today: date

    @property
    def per_day(self) -> int:
        """Microdollars per day, rounded half up."""
        return (2 * self.spent + self.days) // (2 * self.days)

    def days_left(self, balance: int) -> int | None:
        """Whole days the balance still covers at this pace; None when nothing is spent."""
        if self.per_day <= 0:
            return None
        return max(balance, 0) // self.per_day

    def runs_out_on(self, balance: int) -> date | None:
        """The day the balance runs out at this pace: today plus the whole days it still
        covers (today if it is already empty); None when nothing is being spent or when that is
        more than RUN_OUT_HORIZON_DAYS away (a date so far says nothing, and may not exist)."""
        days = self.days_left(balance)
        if days is None or days > RUN_OUT_HORIZON_DAYS:
            return None
        return self.today + timedelta(days=days)


def spend_pace(*, account_id: int | None, today: date, days: int = 7) -> SpendPace:
    spent = spend_total(account_id=account_id, start=today - timedelta(days=days - 1), end=today)
    return SpendPace(days=days, spent=spent, today=today)
