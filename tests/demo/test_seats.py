"""The demo seats, and the issue's "done when" walked through the pages as the owner."""

import re
import uuid
from datetime import timedelta

import time_machine
from django.urls import reverse

from demo.seats import DEMO_EMPTY_SEATS, seed_demo_seats
from organizations.models import Invitation
from payments.sandbox.models import SandboxInvoice, SandboxSubscription
from seats import selectors
from seats.models import SeatSubscription
from tests.conftest import World, client_for, settle
from tests.seats.conftest import PERIOD_END, START


def test_the_demo_gets_paid_seats_with_some_empty_once(world: World) -> None:
    seed_demo_seats(organization=world.org)
    seed_demo_seats(organization=world.org)
    settle()
    assert SandboxSubscription.objects.count() == 1
    subscription = SeatSubscription.objects.get(organization=world.org)
    assert (subscription.status, subscription.plan.code) == ("active", "teams")  # type: ignore[union-attr]
    assert selectors.seat_occupancy(organization=world.org).empty == DEMO_EMPTY_SEATS
    assert SandboxInvoice.objects.get().status == "paid"


def test_done_when(world: World) -> None:
    with time_machine.travel(START, tick=False):
        seed_demo_seats(organization=world.org)  # 3 people + 3 empty = 6 seats
    owner = client_for(world.owner)
    org = world.org.pk

    # Day 10 of a 30-day period: 3 more seats cost 3 × $18 × 20/30 = $36.00, invoiced at once.
    with time_machine.travel(START + timedelta(days=10), tick=False):
        page = owner.get(reverse("org_seats_add", args=[org]), {"seats": 3}).content.decode()
        assert "<strong>$36.00</strong>" in page
        fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', page))
        response = owner.post(reverse("org_seats_add", args=[org]), fields)
        assert response.status_code == 302
        settle()
    invoice = SandboxInvoice.objects.get(billing_reason="subscription_update")
    assert (invoice.status, invoice.amount_paid) == ("paid", 3600)
    subscription = SeatSubscription.objects.get(organization=world.org)
    assert subscription.quantity == 9
    before = subscription.next_invoice_amount

    # Removing 2 empty seats: the next invoice drops by $36, on the same date.
    with time_machine.travel(START + timedelta(days=11), tick=False):
        owner.post(reverse("org_seats_remove", args=[org]), {"seats": 2, "key": str(uuid.uuid4())})
        settle()
        tab = owner.get(reverse("org_seats", args=[org])).content.decode()
    subscription.refresh_from_db()
    assert before is not None
    assert subscription.next_invoice_amount == before - 3600
    assert subscription.current_period_end == PERIOD_END
    assert "$126.00" in tab
    assert "1 Dec 2026, 12:00 UTC" in tab

    # 7 seats, 3 taken: removing 5 would take an occupied seat.
    page = owner.get(reverse("org_seats_remove", args=[org]), {"seats": 5})
    assert page.status_code == 400
    assert "only 4 seats are empty" in page.content.decode()
    owner.post(reverse("org_seats_remove", args=[org]), {"seats": 4, "key": str(uuid.uuid4())})
    assert SandboxSubscription.objects.get().quantity == 3

    # No empty seat left: an invitation is refused, with the way forward.
    response = owner.post(
        reverse("org_invite", args=[org]), {"email": "new@acme.test", "role": "member"}
    )
    assert response.status_code == 400
    assert "There is no empty seat" in response.content.decode()
    assert reverse("org_seats_add", args=[org]) in response.content.decode()
    assert not Invitation.objects.filter(email="new@acme.test").exists()
