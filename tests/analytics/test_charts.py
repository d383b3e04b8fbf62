"""The Usage chart's y axis: a round top and ticks that say what they stand for."""

from datetime import date

import pytest

from analytics.charts import nice_ceiling, short_money, stacked_chart
from analytics.periods import Bucket


@pytest.mark.parametrize(
    ("amount", "label"),
    [
        (0, "$0"),
        (10_000, "$0.01"),
        (25_000, "$0.025"),  # read as $0.03 before: the top of a $0.02 day
        (2_500, "$0.0025"),
        (1_250_000, "$1.25"),
        (12_000_000, "$12"),
        (1_200_000_000, "$1.2k"),
        (3_400_000_000_000, "$3.4M"),
    ],
)
def test_an_axis_label_keeps_the_amounts_decimals(amount: int, label: str) -> None:
    assert short_money(amount) == label


@pytest.mark.parametrize("most", [1, 99, 100, 101, 24_300, 4_100_000, 7_300_000_000])
def test_the_top_is_round_and_every_tick_distinct_and_exact(most: int) -> None:
    top = nice_ceiling(most)
    assert top >= most
    assert top % 4 == 0  # each quarter a whole number of microdollars
    labels = [short_money(top * n // 4) for n in range(5)]
    assert len(set(labels)) == 5, labels


def test_a_days_spend_of_two_cents_gets_distinct_ticks() -> None:
    """What the screenshot showed: three requests of $0.0081 on one day gave the ticks $0, $0.01,
    $0.01, $0.02, $0.03 for a top of $0.025."""
    day = date(2026, 11, 29)
    chart = stacked_chart(
        title="Spend per day by model",
        buckets=[day],
        bucket=Bucket.DAY,
        spend={(day, "claude-sonnet-4"): 24_300},
        labels={"claude-sonnet-4": "claude-sonnet-4"},
    )
    assert [tick.label for tick in chart.y_ticks] == ["$0", "$0.01", "$0.02", "$0.03", "$0.04"]
