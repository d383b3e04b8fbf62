"""The seat rule other apps' services apply inside their own transactions (kept apart from
seats.services, which depends on organizations.services, so that the two can import each other's
halves without a cycle)."""

from uuid import UUID

from seats.exceptions import NoEmptySeat
from seats.models import SEAT_ROLES, SeatSubscription
from seats.selectors import occupied_seat_count


def seat_require_empty(
    *, organization_id: UUID, role: str, invitation_id: int | None = None
) -> None:
    """Refuse (NoEmptySeat) to give `role` a seat when none is empty. `invitation_id`: the pending
    invitation being accepted, whose seat is the one being taken.

    Must run inside the caller's transaction: it locks the organization's seat subscription row,
    which seat removal locks too, so that a removal and an invitation or acceptance are serialized
    and never leave more seat-holders than seats."""
    if role not in SEAT_ROLES:
        return
    subscription = (
        SeatSubscription.objects.select_for_update().filter(organization_id=organization_id).first()
    )
    if subscription is None or not subscription.limited:
        return
    occupied = occupied_seat_count(
        organization_id=organization_id, exclude_invitation_id=invitation_id
    )
    if occupied >= subscription.seats:
        raise NoEmptySeat(seats=subscription.seats, occupied=occupied)
