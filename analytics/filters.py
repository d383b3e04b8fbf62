"""What a Usage page is asked to show, read from its query string. Anything malformed is dropped
with a message saying what was wrong, so the page falls back to the default for that part and
never fails; whether a member, model or project exists is checked against the database after."""

from dataclasses import dataclass, field, replace
from datetime import date
from enum import StrEnum
from typing import Any

from django.http import QueryDict
from django.utils.http import urlencode

from analytics.periods import DEFAULT_PERIOD, EARLIEST, PeriodKind

# The empty project (requests sent without one) in links and filters. A project literally named
# like this cannot be told apart in a filter; the API would have to refuse the name for that.
NO_PROJECT = "(none)"
MAX_TEXT = 200


class Stack(StrEnum):
    MODEL = "model"
    MEMBER = "member"


class Table(StrEnum):
    MEMBER = "member"
    MODEL = "model"
    PROVIDER = "provider"
    PROJECT = "project"


SORT_KEYS = ("name", "requests", "input_tokens", "output_tokens", "cost")
DEFAULT_SORT = "-cost"


@dataclass(frozen=True)
class UsageFilters:
    period: PeriodKind = DEFAULT_PERIOD
    start: date | None = None  # custom range only
    end: date | None = None
    member: int | None = None  # a user id
    provider: str = ""
    model: str = ""
    project: str | None = None  # None: every project; "": requests without a project
    stack: Stack = Stack.MODEL
    sorts: dict[Table, str] = field(default_factory=dict)

    @property
    def has_dimension_filter(self) -> bool:
        return (
            self.member is not None
            or bool(self.provider)
            or bool(self.model)
            or self.project is not None
        )

    def sort_for(self, table: Table) -> str:
        return self.sorts.get(table, DEFAULT_SORT)

    def params(self) -> dict[str, str]:
        """The query string that asks for these filters (defaults left out)."""
        params: dict[str, str] = {}
        if self.period != DEFAULT_PERIOD:
            params["period"] = self.period.value
        if self.period == PeriodKind.CUSTOM and self.start and self.end:
            params["start"] = self.start.isoformat()
            params["end"] = self.end.isoformat()
        if self.member is not None:
            params["member"] = str(self.member)
        if self.provider:
            params["provider"] = self.provider
        if self.model:
            params["model"] = self.model
        if self.project is not None:
            params["project"] = self.project or NO_PROJECT
        if self.stack != Stack.MODEL:
            params["stack"] = self.stack.value
        for table, sort in sorted(self.sorts.items()):
            if sort != DEFAULT_SORT:
                params[f"sort_{table.value}"] = sort
        return params

    def querystring(self, **changes: Any) -> str:
        """`?…` for these filters with some changed (e.g. member=3, or model="" to drop it)."""
        params = replace(self, **changes).params() if changes else self.params()
        return "?" + urlencode(params) if params else ""


@dataclass(frozen=True)
class Parsed:
    filters: UsageFilters
    errors: list[str]


def _date(raw: str, name: str, errors: list[str], today: date) -> date | None:
    try:
        value = date.fromisoformat(raw.strip())
    except ValueError:
        errors.append(f"The {name} date “{raw[:20]}” is not a date like 2025-01-31.")
        return None
    if value < EARLIEST or value > today:
        errors.append(
            f"The {name} date must be between {EARLIEST:%-d %b %Y} and today "
            f"({today:%-d %b %Y}, UTC)."
        )
        return None
    return value


def _text(params: QueryDict, name: str, errors: list[str], *, strip: bool = True) -> str:
    value = params.get(name, "")
    value = value.strip() if strip else value
    if len(value) > MAX_TEXT or "\x00" in value:
        errors.append(f"That {name} is not one we know; showing every {name}.")
        return ""
    return value


def _period(
    params: QueryDict, errors: list[str], today: date
) -> tuple[PeriodKind, date | None, date | None]:
    raw_period = params.get("period", "").strip()
    try:
        period = PeriodKind(raw_period) if raw_period else DEFAULT_PERIOD
    except ValueError:
        errors.append(f"“{raw_period[:20]}” is not a period we offer; showing the last 30 days.")
        return DEFAULT_PERIOD, None, None
    if period != PeriodKind.CUSTOM:
        return period, None, None
    start = end = None
    raw_start, raw_end = params.get("start", ""), params.get("end", "")
    if not raw_start.strip() or not raw_end.strip():
        errors.append("A custom range needs a start and an end date.")
    else:
        start = _date(raw_start, "start", errors, today)
        end = _date(raw_end, "end", errors, today)
        if start and end and end < start:
            errors.append("The custom range ends before it starts.")
    if start is None or end is None or end < start:
        errors.append("Showing the last 30 days instead.")
        return DEFAULT_PERIOD, None, None
    return period, start, end


def _member(params: QueryDict, errors: list[str]) -> int | None:
    raw_member = params.get("member", "").strip()
    if not raw_member:
        return None
    if raw_member.isdigit() and len(raw_member) < 19:
        return int(raw_member)
    errors.append("That member is not in this organization; showing everyone.")
    return None


def _project(params: QueryDict, errors: list[str]) -> str | None:
    if not params.get("project", "").strip():
        return None
    # Not stripped: a project is whatever name the extension sent, spaces included.
    project = _text(params, "project", errors, strip=False) or None
    return "" if project == NO_PROJECT else project


def _stack(params: QueryDict, errors: list[str]) -> Stack:
    raw_stack = params.get("stack", "").strip()
    try:
        return Stack(raw_stack) if raw_stack else Stack.MODEL
    except ValueError:
        errors.append("Charts can be stacked by model or by member; showing by model.")
        return Stack.MODEL


def _sorts(params: QueryDict, errors: list[str]) -> dict[Table, str]:
    sorts: dict[Table, str] = {}
    for table in Table:
        raw_sort = params.get(f"sort_{table.value}", "").strip()
        if not raw_sort:
            continue
        if raw_sort.removeprefix("-") in SORT_KEYS:
            sorts[table] = raw_sort
        else:
            errors.append(f"The {table.value} table cannot be sorted by “{raw_sort[:20]}”.")
    return sorts


def filters_parse(params: QueryDict, *, today: date) -> Parsed:
    """Read the filters; each malformed value is replaced by its default with a message."""
    errors: list[str] = []
    period, start, end = _period(params, errors, today)
    filters = UsageFilters(
        period=period,
        start=start,
        end=end,
        member=_member(params, errors),
        provider=_text(params, "provider", errors),
        model=_text(params, "model", errors),
        project=_project(params, errors),
        stack=_stack(params, errors),
        sorts=_sorts(params, errors),
    )
    return Parsed(filters=filters, errors=errors)
