from datetime import date

import pytest

from credits.models import ModelPrice
from credits.pricing import price_in_force, prices_in_force, prices_load, usage_cost


def price(**prices: int) -> ModelPrice:
    return ModelPrice(
        provider="anthropic",
        model_id="m",
        name="M",
        effective_from=date(2025, 1, 1),
        source_url="https://example.com",
        source_date=date(2025, 1, 1),
        **{
            "input_price": 0,
            "output_price": 0,
            "cache_read_price": 0,
            "cache_write_price": 0,
            **prices,
        },
    )


def test_cost_is_tokens_times_list_price_with_no_markup() -> None:
    sonnet = price(
        input_price=3_000_000,
        output_price=15_000_000,
        cache_read_price=300_000,
        cache_write_price=3_750_000,
    )
    # 1M input at $3 + 1M output at $15 = $18 exactly.
    assert usage_cost(sonnet, input_tokens=1_000_000, output_tokens=1_000_000) == 18_000_000
    # 1,234 in + 567 out + 10,000 cache read + 2,000 cache write:
    # (1234×3 + 567×15 + 10000×0.3 + 2000×3.75) µ$ = 3702 + 8505 + 3000 + 7500 = 22,707 µ$.
    assert (
        usage_cost(
            sonnet,
            input_tokens=1234,
            output_tokens=567,
            cache_read_tokens=10_000,
            cache_write_tokens=2_000,
        )
        == 22_707
    )


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        (1, 0),
        (3, 0),
        (4, 1),
        (5, 1),
        (10, 2),
        (0, 0),
    ],  # 0.15 µ$ a token: 0.45 → 0, 0.6 → 1, 1.5 → 2
)
def test_rounding_is_half_up_once_per_request(tokens: int, expected: int) -> None:
    cheap = price(input_price=150_000)
    assert usage_cost(cheap, input_tokens=tokens, output_tokens=0) == expected


def test_the_catalogue_has_real_prices_for_many_models(db: None) -> None:
    prices = prices_in_force()
    assert len(prices) >= 15
    assert {p.provider for p in prices} >= {"anthropic", "openai", "google"}
    sonnet = price_in_force(provider="anthropic", model_id="claude-sonnet-4")
    assert sonnet is not None
    assert (sonnet.input_price, sonnet.output_price) == (3_000_000, 15_000_000)
    assert all(p.source_url.startswith("https://") for p in prices)
    assert prices_load() == 0  # the migration loaded the same file


def test_a_newer_price_takes_over_on_its_date(db: None) -> None:
    old = price_in_force(provider="openai", model_id="gpt-4o")
    assert old is not None
    ModelPrice.objects.create(
        provider="openai",
        model_id="gpt-4o",
        name="GPT-4o",
        input_price=1,
        output_price=2,
        effective_from=date(2099, 1, 1),
        source_url="https://example.com",
        source_date=date(2099, 1, 1),
    )
    assert price_in_force(provider="openai", model_id="gpt-4o") == old
    newer = price_in_force(provider="openai", model_id="gpt-4o", on=date(2099, 1, 2))
    assert newer is not None
    assert newer.input_price == 1
