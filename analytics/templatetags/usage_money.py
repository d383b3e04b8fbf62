from django import template

from billing.templatetags.money import cents, microdollars

register = template.Library()


@register.filter
def dollars(value: int | None) -> str:
    """Microdollars as a person reads a spend: to the cent, half up ($87.64), and amounts under
    a cent with the digits it takes to be true ($0.000450). The CSV has every microdollar."""
    if value is None:
        return ""
    if value and abs(value) < 10_000:
        return microdollars(value)
    sign = -1 if value < 0 else 1
    return cents(sign * ((abs(int(value)) + 5_000) // 10_000))
