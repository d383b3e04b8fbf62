from django import template

register = template.Library()


@register.filter
def cents(value: int | None) -> str:
    """Integer cents as dollars with two decimals: 123450 → $1,234.50."""
    if value is None:
        return ""
    sign = "-" if value < 0 else ""
    dollars, rest = divmod(abs(int(value)), 100)
    return f"{sign}${dollars:,}.{rest:02d}"


@register.filter
def microdollars(value: int | None) -> str:
    """Microdollars with two decimals, or as many as it takes below a cent: $0.000450."""
    if value is None:
        return ""
    sign = "-" if value < 0 else ""
    amount = abs(int(value))
    dollars, rest = divmod(amount, 1_000_000)
    if rest % 10_000 == 0:
        return f"{sign}${dollars:,}.{rest // 10_000:02d}"
    digits = f"{rest:06d}".rstrip("0")
    return f"{sign}${dollars:,}.{digits}"
