"""Charts as geometry for server-rendered SVG: no script, no CDN. The templates draw the shapes
computed here and print the same numbers as a table beside each chart.

Only shapes scale with the page: the plot is an SVG stretched to the width of its box
(`preserveAspectRatio="none"`, at a fixed height in CSS pixels), and every word and number is
drawn at its own size outside it — the axes in SVGs without a viewBox (one unit, one CSS pixel;
the x positions in percent of the plot's width), the bar charts' labels and amounts as HTML. A
720-unit chart scaled into a 390-px phone drew its 11-unit text 5 px tall (issue 23)."""

from dataclasses import dataclass
from datetime import date

from analytics.periods import Bucket
from billing.templatetags.money import microdollars

# Okabe–Ito: told apart by people with the common colour-vision deficiencies. Grey is "Other".
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#b8a100")
OTHER_COLOUR = "#8c8c8c"
OTHER = "__other__"

# The stacked chart's plot, in its viewBox's units: the width is stretched to the box; the height
# is CSS pixels (static/css/analytics.css, .chart-plot), so y positions are pixels on the y axis.
WIDTH = 648
HEIGHT = 232
TOP = 12  # room above the highest tick for half its label
# A bar chart's bar, in its viewBox's units (stretched to the track's width).
BAR_SPACE = 240


def short_money(amount: int) -> str:
    """Axis labels: $0, $0.25, $0.0025, $12, $1.2k, $3.4M. Under $10, as many decimals as the
    amount has (two at least), so that no two ticks of a small axis read the same."""
    dollars = amount / 1_000_000
    if dollars >= 1_000_000:
        return f"${dollars / 1_000_000:.1f}M".replace(".0M", "M")
    if dollars >= 1000:
        return f"${dollars / 1000:.1f}k".replace(".0k", "k")
    if dollars >= 10 or dollars == int(dollars):
        return f"${dollars:,.0f}"
    decimals = len(f"{dollars:.6f}".rstrip("0").split(".")[1])
    return f"${dollars:.{max(decimals, 2)}f}"


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2, 4, 5 or 8 × 10ⁿ at or above value (microdollars), for the y axis: a
    quarter of each is a round figure for the ticks."""
    if value <= 0:
        return 1_000_000
    step = 100  # $0.0001 at least, so that the quarters stay whole microdollars
    while True:
        for factor in (1, 2, 4, 5, 8):
            candidate = step * factor
            if candidate >= value:
                return candidate
        step *= 10


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    colour: str
    total: int


@dataclass(frozen=True)
class Segment:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclass(frozen=True)
class Tick:
    position: float  # y: pixels from the plot's top; x: percent of the plot's width
    label: str
    anchor: str = "middle"
    minor: bool = False  # left out on a phone, where every label would not fit


@dataclass(frozen=True)
class Column:
    """One bucket of the stacked chart, with its numbers for the table view."""

    start: date
    label: str
    values: list[int]  # per series, in legend order
    total: int


@dataclass(frozen=True)
class StackedChart:
    title: str
    description: str
    series: list[Series]
    segments: list[Segment]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    columns: list[Column]
    unit: str = "day"
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def empty(self) -> bool:
        return not any(column.total for column in self.columns)


def bucket_label(start: date, bucket: Bucket, *, short: bool = False) -> str:
    if bucket == Bucket.MONTH:
        return f"{start:%b %Y}"
    if bucket == Bucket.WEEK:
        return f"{start:%-d %b}" if short else f"week of {start:%-d %b %Y}"
    return f"{start:%-d %b}" if short else f"{start:%a %-d %b %Y}"


def stacked_chart(
    *,
    title: str,
    buckets: list[date],
    bucket: Bucket,
    spend: dict[tuple[date, str], int],
    labels: dict[str, str],
    most: int = len(PALETTE),
) -> StackedChart:
    """Spend per bucket stacked by series: the `most` biggest series by total, the rest as
    "Other"."""
    totals: dict[str, int] = {}
    for (_, key), amount in spend.items():
        totals[key] = totals.get(key, 0) + amount
    ranked = sorted(totals, key=lambda key: (-totals[key], labels.get(key, key)))
    shown = ranked if len(ranked) <= most else ranked[: most - 1]
    series = [
        Series(key, labels.get(key, key), PALETTE[n % len(PALETTE)], totals[key])
        for n, key in enumerate(shown)
    ]
    rest = [key for key in ranked if key not in set(shown)]
    if rest:
        series.append(
            Series(OTHER, f"{len(rest)} others", OTHER_COLOUR, sum(totals[k] for k in rest))
        )
    rest_set = set(rest)
    columns: list[Column] = []
    for start in buckets:
        values = [spend.get((start, s.key), 0) for s in series if s.key != OTHER]
        if rest:
            values.append(sum(spend.get((start, key), 0) for key in rest_set))
        columns.append(Column(start, bucket_label(start, bucket), values, sum(values)))

    top = nice_ceiling(max((column.total for column in columns), default=0))
    plot_height = HEIGHT - TOP
    slot = WIDTH / max(len(columns), 1)
    bar = max(slot * 0.8, 1.0)
    segments: list[Segment] = []
    for index, column in enumerate(columns):
        x = index * slot + (slot - bar) / 2
        base = float(HEIGHT)
        for one, amount in zip(series, column.values, strict=True):
            if not amount:
                continue
            height = amount / top * plot_height
            base -= height
            segments.append(
                Segment(
                    round(x, 2),
                    round(base, 2),
                    round(bar, 2),
                    round(max(height, 0.5), 2),
                    one.colour,
                    f"{column.label}: {one.label} {microdollars(amount)}",
                )
            )
    y_ticks = [
        Tick(round(HEIGHT - plot_height * n / 4, 2), short_money(top * n // 4)) for n in range(5)
    ]
    every = max(1, -(-len(columns) // 8))
    x_ticks: list[Tick] = []
    for index, column in enumerate(columns):
        if index % every:
            continue
        percent = round((index * slot + slot / 2) * 100 / WIDTH, 2)
        # A label centred on the first or last bar would stick out of the chart's box.
        anchor = "start" if percent < 6 else "end" if percent > 94 else "middle"
        x_ticks.append(
            Tick(
                percent,
                bucket_label(column.start, bucket, short=True),
                anchor,
                minor=len(x_ticks) % 2 == 1,
            )
        )
    unit = {Bucket.DAY: "day", Bucket.WEEK: "week", Bucket.MONTH: "month"}[bucket]
    description = (
        f"Stacked bars, one per {unit}, {len(series)} series; the same numbers are in the table."
    )
    return StackedChart(title, description, series, segments, y_ticks, x_ticks, columns, unit)


@dataclass(frozen=True)
class Bar:
    label: str
    detail: str
    amount: int
    share: float  # of the chart's total, 0–100
    width: float  # of BAR_SPACE
    href: str


@dataclass(frozen=True)
class BarChart:
    title: str
    bars: list[Bar]
    total: int
    bar_space: int = BAR_SPACE


def bar_chart(*, title: str, items: list[tuple[str, str, int, str]], most: int = 8) -> BarChart:
    """Horizontal bars for the biggest items, (label, detail, amount, link) each, biggest first;
    the rest summed as one bar."""
    ranked = sorted(items, key=lambda item: (-item[2], item[0]))
    total = sum(item[2] for item in ranked)
    if len(ranked) > most:
        rest = ranked[most - 1 :]
        ranked = [*ranked[: most - 1], (f"{len(rest)} others", "", sum(i[2] for i in rest), "")]
    biggest = max((item[2] for item in ranked), default=0) or 1
    bars = [
        Bar(
            label=label,
            detail=detail,
            amount=amount,
            share=round(amount * 100 / total, 1) if total else 0.0,
            width=round(max(amount / biggest * BAR_SPACE, 1.0 if amount else 0.0), 2),
            href=href,
        )
        for label, detail, amount, href in ranked
    ]
    return BarChart(title, bars, total)
