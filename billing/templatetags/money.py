from django import template

register = template.Library()

MICRODOLLARS_PER_CENT = 10_000


@register.filter
def cents(value: int | None) -> str:
    """Integer cents as dollars with two decimals: 123450 → $1,234.50."""
    if value is None:
        return ""
    sign = "-" if value < 0 else ""
    dollars, rest = divmod(abs(int(value)), 100)
    return f"{sign}${dollars:,}.{rest:02d}"


def microdollars_to_cents(value: int) -> int:
    """Microdollars rounded to the nearest cent, halves away from zero ("half up" on the
    amount): 3_700_294_159 → 370_029, 5_000 → 1, -5_000 → -1. What a person reads of a balance
    or a total; the ledger keeps the exact microdollars."""
    magnitude = (abs(int(value)) + MICRODOLLARS_PER_CENT // 2) // MICRODOLLARS_PER_CENT
    return -magnitude if value < 0 else magnitude


@register.filter
def dollars(value: int | None) -> str:
    """Microdollars as dollars and cents, for balances and totals: 3_700_294_159 → $3,700.29
    (rounded half up, see `microdollars_to_cents`)."""
    if value is None:
        return ""
    return cents(microdollars_to_cents(value))


@register.filter
def microdollars(value: int | None) -> str:
    """Microdollars with two decimals, or as many as it takes below a cent: $0.000450. For
    amounts that are exact by nature (one request's cost, a ledger row), never for balances."""
    if value is None:
        return ""
    sign = "-" if value < 0 else ""
    amount = abs(int(value))
    dollars, rest = divmod(amount, 1_000_000)
    if rest % 10_000 == 0:
        return f"{sign}${dollars:,}.{rest // 10_000:02d}"
    digits = f"{rest:06d}".rstrip("0")
    return f"{sign}${dollars:,}.{digits}"
