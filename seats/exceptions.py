"""What the seat rules refuse, in words a user can act on. Views turn these into messages."""

from __future__ import annotations

from typing import TYPE_CHECKING

from organizations.exceptions import SeatRequired

if TYPE_CHECKING:
    from seats.selectors import AdditionPreview, SeatHolder


class SeatError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NoEmptySeat(SeatRequired):
    """Inviting or making someone an owner, admin or member needs an empty seat."""

    def __init__(self, *, seats: int, occupied: int) -> None:
        if seats == 0:
            message = (
                "There is no empty seat: this organization has no seats right now (its seat "
                "subscription ended). Buy seats first."
            )
        else:
            message = (
                f"There is no empty seat: all {seats} seat{'s' if seats != 1 else ''} are taken "
                "by members and open invitations. Add seats, or remove someone or revoke an "
                "invitation first."
            )
        super().__init__(message)
        self.seats = seats
        self.occupied = occupied


class NoSeatSubscription(SeatError):
    def __init__(self) -> None:
        super().__init__("This organization has no seats yet; buy seats first.")


class SeatsInUse(SeatError):
    """Only empty seats can be removed."""

    def __init__(self, *, asked: int, empty: int, holders: list[SeatHolder]) -> None:
        names = ", ".join(holder.describe() for holder in holders)
        empty_words = (
            "no seat is" if empty == 0 else f"only {empty} seat{'s are' if empty > 1 else ' is'}"
        )
        super().__init__(
            f"You asked to remove {asked} seat{'s' if asked != 1 else ''}, but {empty_words} "
            f"empty: {len(holders)} {'is' if len(holders) == 1 else 'are'} occupied, by {names}. "
            "Remove members or revoke "
            "invitations first, then remove the seats."
        )
        self.asked = asked
        self.empty = empty
        self.holders = holders


class StalePreview(SeatError):
    """The price or the billing period changed since the preview (or the preview is too old):
    nothing was charged, and `preview` is the charge as of now, to confirm again."""

    def __init__(self, *, preview: AdditionPreview) -> None:
        super().__init__(
            "The price or the billing period changed since you looked, so nothing was charged. "
            "Here is the charge as of now; confirm again if it suits you."
        )
        self.preview = preview


class PaymentFailed(SeatError):
    """The card was declined; nothing changed. `invoice_id` is the open invoice, if one was left."""

    def __init__(self, message: str, *, invoice_id: str = "") -> None:
        super().__init__(message)
        self.invoice_id = invoice_id


class AuthenticationRequired(SeatError):
    """The bank wants the payer to confirm the payment (3-D Secure) at `action_url`; the seats
    come when they do. Nothing is declined."""

    def __init__(self, *, action_url: str) -> None:
        super().__init__(
            "Your bank needs you to confirm this payment; the seats are added when you do."
        )
        self.action_url = action_url


class SeatChangeBusy(SeatError):
    def __init__(self) -> None:
        super().__init__(
            "Another seat change for this organization is being charged right now; try again "
            "in a minute."
        )
