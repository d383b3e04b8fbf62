"""The auto top-up rules, checked by the form and again by the service that saves them."""

from credits.exceptions import AutoTopupRefused
from credits.money import MICRODOLLARS_PER_CENT

AUTO_TOPUP_MIN_CENTS = 10 * 100
AUTO_TOPUP_MAX_CENTS = 10_000 * 100
AUTO_TOPUP_THRESHOLD_MAX = 10_000 * 1_000_000  # microdollars
# Automatic charges one account may make in any 24 hours; the next attempt turns auto top-up off.
AUTO_TOPUP_MAX_PER_DAY = 3


def auto_topup_check(*, threshold: int, amount_cents: int) -> None:
    """A top-up must lift the balance above its threshold, or every request under the threshold
    would charge the card again."""
    if not 0 <= threshold <= AUTO_TOPUP_THRESHOLD_MAX:
        raise AutoTopupRefused("The threshold can be at most $10,000.")
    if not AUTO_TOPUP_MIN_CENTS <= amount_cents <= AUTO_TOPUP_MAX_CENTS:
        raise AutoTopupRefused("A top-up is between $10 and $10,000.")
    if amount_cents * MICRODOLLARS_PER_CENT <= threshold:
        raise AutoTopupRefused(
            "The top-up must be more than the threshold, so that one top-up lifts the balance "
            "above it."
        )
