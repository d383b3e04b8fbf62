"""From a usage report to what a Usage page prints: summary cards with their change, charts,
sortable breakdown tables whose rows link to the filtered view, and the filter menus."""

from dataclasses import dataclass
from typing import Any

from analytics import charts
from analytics.filters import DEFAULT_SORT, NO_PROJECT, Stack, Table, UsageFilters
from analytics.periods import LABELS, PeriodKind
from analytics.selectors import Line, Totals, UsageReport, UsageScope
from analytics.templatetags.usage_money import dollars
from billing.templatetags.money import microdollars


@dataclass(frozen=True)
class Card:
    label: str
    value: str
    change: str  # "+12.5%", "−3.0%", "new", "" (nothing to compare with)
    direction: str  # "up", "down", "flat", ""
    previous: str


def _change(current: int, previous: int | None) -> tuple[str, str]:
    if previous is None:
        return "", ""
    if previous == 0:
        return ("new", "up") if current else ("no change", "flat")
    percent = (current - previous) * 100 / previous
    if abs(percent) < 0.05:
        return "no change", "flat"
    sign = "+" if percent > 0 else "−"
    return f"{sign}{abs(percent):,.1f}%", "up" if percent > 0 else "down"


def summary_cards(totals: Totals, previous: Totals | None, *, with_members: bool) -> list[Card]:
    def card(label: str, current: int | None, earlier: int | None, fmt: Any) -> Card:
        change, direction = _change(current or 0, earlier) if current is not None else ("", "")
        return Card(
            label,
            fmt(current) if current is not None else "—",
            change,
            direction,
            fmt(earlier) if earlier is not None else "",
        )

    def number(value: int | None) -> str:
        return f"{value:,}" if value is not None else ""

    def money(value: int | None) -> str:
        return dollars(value)

    def unit_price(value: int | None) -> str:
        return microdollars(value)

    earlier = previous
    cards = [
        card("Spend", totals.cost, earlier.cost if earlier else None, money),
        card("Requests", totals.requests, earlier.requests if earlier else None, number),
        card(
            "Input tokens",
            totals.input_tokens,
            earlier.input_tokens if earlier else None,
            number,
        ),
        card(
            "Output tokens",
            totals.output_tokens,
            earlier.output_tokens if earlier else None,
            number,
        ),
    ]
    if with_members:
        cards.append(
            card("Active members", totals.members, earlier.members if earlier else None, number)
        )
    cards.append(
        card(
            "Average cost per request",
            totals.average_cost,
            earlier.average_cost if earlier else None,
            unit_price,
        )
    )
    return cards


@dataclass(frozen=True)
class SortLink:
    label: str
    href: str
    state: str  # "ascending", "descending" or "none" (aria-sort)
    numeric: bool


@dataclass(frozen=True)
class Row:
    line: Line
    href: str
    share: float
    current: bool  # the row the page is filtered to


@dataclass(frozen=True)
class Breakdown:
    table: Table
    title: str
    columns: list[SortLink]
    rows: list[Row]
    total: int


_COLUMNS = (
    ("name", "", False),
    ("requests", "Requests", True),
    ("input_tokens", "Input tokens", True),
    ("output_tokens", "Output tokens", True),
    ("cost", "Spend", True),
)
_TITLES = {
    Table.MEMBER: ("By member", "Member"),
    Table.MODEL: ("By model", "Model"),
    Table.PROVIDER: ("By provider", "Provider"),
    Table.PROJECT: ("By project", "Project"),
}


def _row_filter(table: Table, line: Line) -> dict[str, Any]:
    if table == Table.MEMBER:
        return {"member": int(line.key) if line.key else None}
    if table == Table.MODEL:
        return {"model": line.key, "provider": line.detail}
    if table == Table.PROVIDER:
        return {"provider": line.key, "model": ""}
    return {"project": line.key}


def _is_current(table: Table, line: Line, filters: UsageFilters) -> bool:
    if table == Table.MEMBER:
        return filters.member is not None and line.key == str(filters.member)
    if table == Table.MODEL:
        return filters.model == line.key
    if table == Table.PROVIDER:
        return filters.provider == line.key
    return filters.project is not None and filters.project == line.key


def breakdown(table: Table, lines: list[Line], filters: UsageFilters, base: str) -> Breakdown:
    sort = filters.sort_for(table)
    key = sort.removeprefix("-")
    descending = sort.startswith("-")

    def order(line: Line) -> Any:
        return (line.label.lower(), line.detail) if key == "name" else getattr(line, key)

    ordered = sorted(lines, key=order, reverse=descending)
    total = sum(line.cost for line in lines)
    columns = []
    for column, heading, numeric in _COLUMNS:
        label = heading or _TITLES[table][1]
        if column == key:
            state = "descending" if descending else "ascending"
            next_sort = column if descending else f"-{column}"
        else:
            state = "none"
            next_sort = f"-{column}" if numeric else column
        sorts = {**filters.sorts, table: next_sort}
        if next_sort == DEFAULT_SORT:
            sorts.pop(table)
        href = f"{base}{filters.querystring(sorts=sorts)}#by-{table.value}"
        columns.append(SortLink(label, href, state, numeric))
    rows = [
        Row(
            line,
            f"{base}{filters.querystring(**_row_filter(table, line))}",
            round(line.cost * 100 / total, 1) if total else 0.0,
            _is_current(table, line, filters),
        )
        for line in ordered
    ]
    return Breakdown(table, _TITLES[table][0], columns, rows, total)


def page_context(
    *, scope: UsageScope, filters: UsageFilters, report: UsageReport, base: str
) -> dict[str, Any]:
    """Everything the template prints, computed here so that the template stays a layout."""
    by_member = scope.sees_everyone and scope.organization is not None
    stack_by_member = by_member and filters.stack == Stack.MEMBER
    series_name = "member" if stack_by_member else "model"
    unit = report.period.bucket.value
    spend_chart = charts.stacked_chart(
        title=f"Spend per {unit} by {series_name}",
        buckets=report.buckets,
        bucket=report.period.bucket,
        spend=report.spend,
        labels=report.series_labels,
    )

    def bars(title: str, table: Table, lines: list[Line]) -> charts.BarChart:
        items = [
            (
                line.label,
                line.detail,
                line.cost,
                f"{base}{filters.querystring(**_row_filter(table, line))}",
            )
            for line in lines
        ]
        return charts.bar_chart(title=title, items=items)

    top_charts = [bars("Top models by spend", Table.MODEL, report.by_model)]
    if by_member:
        top_charts.append(bars("Top members by spend", Table.MEMBER, report.by_member))
    top_charts.append(bars("Top projects by spend", Table.PROJECT, report.by_project))

    tables = []
    if by_member:
        tables.append(breakdown(Table.MEMBER, report.by_member, filters, base))
    tables += [
        breakdown(Table.MODEL, report.by_model, filters, base),
        breakdown(Table.PROVIDER, report.by_provider, filters, base),
        breakdown(Table.PROJECT, report.by_project, filters, base),
    ]

    active = []
    if filters.member is not None:
        person = next((p for p in report.member_options if p.user_id == filters.member), None)
        name = person.name if person else scope.viewer.get_full_name()
        active.append(("Member", name, filters.querystring(member=None)))
    if filters.provider:
        active.append(("Provider", filters.provider, filters.querystring(provider="")))
    if filters.model:
        active.append(("Model", filters.model, filters.querystring(model="")))
    if filters.project is not None:
        active.append(
            ("Project", filters.project or "(no project)", filters.querystring(project=None))
        )

    params = filters.params()
    range_fields = {"period", "start", "end"}
    dimension_fields = {"member", "provider", "model", "project"}
    return {
        "period_links": [
            (
                LABELS[kind],
                filters.querystring(period=kind, start=None, end=None),
                kind == filters.period,
            )
            for kind in PeriodKind
            if kind != PeriodKind.CUSTOM
        ],
        "hidden_for_filters": [(k, v) for k, v in params.items() if k not in dimension_fields],
        "hidden_for_range": [(k, v) for k, v in params.items() if k not in range_fields],
        "clear_filters": filters.querystring(member=None, provider="", model="", project=None),
        "scope": scope,
        "filters": filters,
        "report": report,
        "period": report.period,
        "cards": summary_cards(report.totals, report.previous, with_members=by_member),
        "org_cards": summary_cards(report.org_totals, report.org_previous, with_members=True)
        if report.org_totals is not None
        else None,
        "spend_chart": spend_chart,
        "top_charts": top_charts,
        "tables": tables,
        "by_member": by_member,
        "stack_by_member": stack_by_member,
        "stack_links": {
            "model": filters.querystring(stack=Stack.MODEL),
            "member": filters.querystring(stack=Stack.MEMBER),
        },
        "no_project": NO_PROJECT,
        "active_filters": active,
        "querystring": filters.querystring(),
        "empty": report.totals.requests == 0,
    }
