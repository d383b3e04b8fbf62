"""Zero markup: a request costs its tokens at the provider's list price, nothing added.

Rounding rule: each token count is multiplied by its price per million tokens (integer
microdollars), the four products are added, and the exact sum is divided by one million once,
rounding half up to the whole microdollar. Rounding happens once per request, never per token
kind, so that the cost is the list price to within half a microdollar.
"""

import json
from datetime import date
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from credits.models import ModelPrice

PRICES_FILE = Path(__file__).resolve().parent / "data" / "model_prices.json"
TOKENS_PER_PRICE_UNIT = 1_000_000


def usage_cost(
    price: ModelPrice,
    *,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> int:
    exact = (
        input_tokens * price.input_price
        + output_tokens * price.output_price
        + cache_read_tokens * price.cache_read_price
        + cache_write_tokens * price.cache_write_price
    )
    return (exact + TOKENS_PER_PRICE_UNIT // 2) // TOKENS_PER_PRICE_UNIT


def price_in_force(*, provider: str, model_id: str, on: date | None = None) -> ModelPrice | None:
    return (
        ModelPrice.objects.filter(
            provider=provider, model_id=model_id, effective_from__lte=on or timezone.now().date()
        )
        .order_by("-effective_from")
        .first()
    )


def prices_in_force(*, on: date | None = None) -> list[ModelPrice]:
    """The current price of every model: the newest row per (provider, model) not in the future."""
    return list(
        ModelPrice.objects.filter(effective_from__lte=on or timezone.now().date())
        .order_by("provider", "model_id", "-effective_from")
        .distinct("provider", "model_id")
    )


@transaction.atomic
def prices_load(path: Path = PRICES_FILE) -> int:
    """Upsert the catalogue from the data file; returns how many rows were new or changed."""
    data = json.loads(path.read_text())
    changed = 0
    for row in data["prices"]:
        _, created = ModelPrice.objects.update_or_create(
            provider=row["provider"],
            model_id=row["model_id"],
            effective_from=date.fromisoformat(row["effective_from"]),
            defaults={
                "name": row["name"],
                "input_price": row["input"],
                "output_price": row["output"],
                "cache_read_price": row["cache_read"],
                "cache_write_price": row["cache_write"],
                "source_url": row["source_url"],
                "source_date": date.fromisoformat(row["source_date"]),
            },
        )
        changed += created
    return changed
