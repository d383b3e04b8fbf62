"""Dollars typed by people, read the same way by every form and command: digits, optional
thousands commas, at most two decimals, an optional "$", within the bounds of what is being set.
No exponents, no infinities, nothing that could overflow a database integer."""

import re

MICRODOLLARS_PER_CENT = 10_000
# "1250", "1,250", "1,250.50", "$1250.5", "0.05"; never "1e3", "1.234", "1,25".
_DOLLARS = re.compile(r"(?P<whole>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<cents>\d{1,2}))?", re.ASCII)
_TOO_PRECISE = re.compile(r"\d[\d,]*\.\d{3,}", re.ASCII)
_MAX_DIGITS = 12  # far above any bound below, far below any integer overflow


class MoneyError(ValueError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def parse_dollars(
    raw: str,
    *,
    field: str = "amount",
    max_dollars: int,
    min_cents: int = 1,
    signed: bool = False,
) -> int:
    """`raw` as integer cents, or MoneyError saying what to type. `signed` allows a leading
    minus (adjustments); the bounds then apply to the size of the amount."""
    text = raw.strip()
    negative = signed and text.startswith("-")
    text = text.removeprefix("-").strip() if negative else text
    text = text.removeprefix("$").strip()
    match = _DOLLARS.fullmatch(text)
    if match is None or len(match["whole"]) > _MAX_DIGITS + 3:
        if text.startswith("-"):
            raise MoneyError(f"The {field} must be more than $0.")
        if _TOO_PRECISE.fullmatch(text):
            raise MoneyError("Amounts are in whole cents: use at most two decimals.")
        example = "-25 or 1,500.50" if signed else "1500 or 1,500.50"
        raise MoneyError(f"Enter the {field} as a number of dollars, e.g. {example}.")
    cents = int(match["whole"].replace(",", "")) * 100 + int((match["cents"] or "0").ljust(2, "0"))
    if cents < min_cents:
        raise MoneyError(
            f"The {field} must be at least ${min_cents / 100:,.2f}."
            if min_cents > 1
            else f"The {field} must be more than $0."
        )
    if cents > max_dollars * 100:
        raise MoneyError(f"The {field} can be at most ${max_dollars:,}.")
    return -cents if negative else cents


def cents_to_microdollars(cents: int) -> int:
    return cents * MICRODOLLARS_PER_CENT
