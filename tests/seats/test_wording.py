"""What the Seats pages say: plurals, the defaults of the forms, and the add-seats preview of a
subscription that is cancelled at the period's end."""

import uuid
from datetime import timedelta
from typing import Any

import time_machine
from django.urls import reverse

from seats import selectors, services
from tests.conftest import World, client_for
from tests.seats.conftest import START, buy


def _confirm_addition(world: World, seats: int) -> Any:
    preview = selectors.seat_addition_preview(organization=world.org, seats=seats)
    return client_for(world.owner).post(
        reverse("org_seats_add", args=[world.org.pk]),
        {
            "seats": seats,
            "key": str(uuid.uuid4()),
            "proration_date": int(preview.proration_date.timestamp()),
            "period_end": int(preview.period_end.timestamp()),
            "unit_amount": preview.unit_amount,
        },
        follow=True,
    )


def test_one_seat_is_one_seat(world: World) -> None:
    with time_machine.travel(START, tick=False):
        buy(world.org, world.owner, seats=5)
    with time_machine.travel(START + timedelta(days=15), tick=False):
        page = _confirm_addition(world, 1).content.decode()
        assert "Added 1 seat: $9.00 charged today" in page
        assert "You now have 6 seats" in page
        removed = client_for(world.owner).post(
            reverse("org_seats_remove", args=[world.org.pk]),
            {"seats": 1, "key": str(uuid.uuid4())},
            follow=True,
        )
        assert "Removed 1 empty seat; you now have 5." in removed.content.decode()


def test_the_remove_field_starts_at_one_seat_not_every_empty_one(world: World) -> None:
    with time_machine.travel(START, tick=False):
        buy(world.org, world.owner, seats=9)  # three people hold seats: six are empty
        page = client_for(world.owner).get(reverse("org_seats", args=[world.org.pk]))
    html = page.content.decode()
    assert 'id="remove-seats" name="seats" min="1" max="10000" value="1"' in html
    assert "<strong>6</strong>" in html  # the empty seats, shown, not pre-filled


def test_adding_seats_while_cancelled_says_no_further_invoice(world: World) -> None:
    with time_machine.travel(START, tick=False):
        buy(world.org, world.owner, seats=5)
        services.seats_cancel(actor=world.owner, organization=world.org)
    with time_machine.travel(START + timedelta(days=10), tick=False):
        page = (
            client_for(world.owner)
            .get(reverse("org_seats_add", args=[world.org.pk]), {"seats": 2})
            .content.decode()
        )
    assert "no further invoice is charged" in page
    assert "New monthly total" not in page
    assert "the subscription is cancelled" in page
    assert reverse("org_seats_resume", args=[world.org.pk]) in page
