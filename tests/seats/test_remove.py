"""Removing seats: only empty ones, no proration or refund, the next invoice smaller, the billing
date unchanged; asking for more names who holds them."""

import uuid
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.urls import reverse

from organizations.models import AuditEvent
from organizations.roles import Role
from payments.sandbox import engine
from payments.sandbox.models import SandboxInvoice, SandboxSubscription
from seats import services
from seats.exceptions import SeatError, SeatsInUse
from seats.models import SeatChange, SeatSubscription
from tests.conftest import World, client_for, settle
from tests.factories import InvitationFactory
from tests.seats.conftest import PERIOD_END, START, buy

URL = "org_seats_remove"


def remove(world: World, seats: int, key: str | None = None) -> SeatChange:
    return services.seats_remove(
        actor=world.owner,
        organization=world.org,
        seats=seats,
        idempotency_key=key or str(uuid.uuid4()),
    )


def test_removing_empty_seats_lowers_the_next_invoice_and_keeps_the_date(
    world: World, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(START, tick=False):
        buy(world.org, world.owner, seats=6)  # 3 taken, 3 empty
    mail.outbox.clear()
    with time_machine.travel(START + timedelta(days=12), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            change = remove(world, 2)
        settle()
    assert (change.status, change.quantity_before, change.quantity_after) == ("succeeded", 6, 4)
    subscription = SeatSubscription.objects.get(organization=world.org)
    assert (subscription.quantity, subscription.removing, subscription.seats) == (4, 0, 4)
    assert subscription.current_period_end == PERIOD_END
    assert subscription.next_invoice_amount == 4 * 1800
    # No proration, no refund: no invoice at all.
    assert not SandboxInvoice.objects.exclude(billing_reason="subscription_create").exists()
    assert AuditEvent.objects.get(action="seats.remove").details["quantity"] == 4
    removed = [m for m in mail.outbox if "Seats removed" in m.subject]
    assert len(removed) == 1
    assert "$72.00" in removed[0].body
    # The renewal bills the smaller count on the same date.
    with time_machine.travel(PERIOD_END + timedelta(hours=2), tick=False):
        engine.tick()
        settle()
    renewal = SandboxInvoice.objects.get(billing_reason="subscription_cycle")
    assert (renewal.amount_due, renewal.period_start) == (4 * 1800, PERIOD_END)


def test_occupied_seats_cannot_be_removed(world: World) -> None:
    buy(world.org, world.owner, seats=5)
    InvitationFactory(organization=world.org, email="new@acme.test", role=Role.MEMBER)
    # owner, admin, member and the invitation: 4 of 5 taken, 1 empty
    with pytest.raises(SeatsInUse) as refused:
        remove(world, 2)
    message = refused.value.message
    assert "only 1 seat is empty" in message
    assert "4 are occupied" in message
    for who in ("owner@acme.test", "admin@acme.test", "member@acme.test", "new@acme.test"):
        assert who in message
    assert "billing_manager@acme.test" not in message
    assert SandboxSubscription.objects.get().quantity == 5
    assert SeatSubscription.objects.get(organization=world.org).removing == 0
    assert remove(world, 1).status == "succeeded"


def test_the_page_names_the_holders_with_the_ways_to_free_seats(world: World) -> None:
    buy(world.org, world.owner, seats=4)
    invitation = InvitationFactory(organization=world.org, email="new@acme.test", role=Role.ADMIN)
    response = client_for(world.owner).get(reverse(URL, args=[world.org.pk]), {"seats": 2})
    page = response.content.decode()
    assert response.status_code == 400
    assert "no seat is empty" in page
    member = world.org.memberships.get(user=world.member)
    assert reverse("org_member_remove", args=[world.org.pk, member.pk]) in page
    assert "revoke the invitation" in page
    assert invitation.email in page
    # A billing manager may not remove people: the page names them without the removal link.
    page = client_for(world.billing).get(reverse(URL, args=[world.org.pk]), {"seats": 2})
    assert reverse("org_member_remove", args=[world.org.pk, member.pk]) not in page.content.decode()


def test_the_confirmation_page_then_the_removal(world: World) -> None:
    with time_machine.travel(START, tick=False):
        buy(world.org, world.owner, seats=6)
        client = client_for(world.billing)
        page = client.get(reverse(URL, args=[world.org.pk]), {"seats": 2})
        text = page.content.decode()
        assert page.status_code == 200
        assert "$72.00" in text
        assert "$108.00" in text
        assert "no refund" in text.lower()
        assert SandboxSubscription.objects.get().quantity == 6
        response = client.post(
            reverse(URL, args=[world.org.pk]), {"seats": 2, "key": str(uuid.uuid4())}
        )
        assert response.status_code == 302
        assert "Removed 2 empty seats" in client.get(response["Location"]).content.decode()
    assert SandboxSubscription.objects.get().quantity == 4


def test_a_double_submit_removes_once(world: World) -> None:
    buy(world.org, world.owner, seats=6)
    remove(world, 2, key="same")
    again = remove(world, 2, key="same")
    assert again.status == "succeeded"
    assert SandboxSubscription.objects.get().quantity == 4
    assert AuditEvent.objects.filter(action="seats.remove").count() == 1


def test_a_subscription_keeps_one_seat(world: World) -> None:
    world.org.memberships.exclude(user=world.owner).delete()
    buy(world.org, world.owner, seats=2)
    page = client_for(world.owner).get(reverse(URL, args=[world.org.pk]), {"seats": 2})
    assert page.status_code == 400
    assert "keeps at least one seat; to stop paying for seats, cancel it" in page.content.decode()
    with pytest.raises(SeatError):
        remove(world, 2)


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "x", "10001"])
def test_bad_counts_are_form_errors(world: World, value: str) -> None:
    buy(world.org, world.owner, seats=6)
    client = client_for(world.owner)
    assert client.get(reverse(URL, args=[world.org.pk]), {"seats": value}).status_code == 400
    response = client.post(reverse(URL, args=[world.org.pk]), {"seats": value, "key": "k"})
    assert response.status_code == 400
    assert SandboxSubscription.objects.get().quantity == 6
