"""Adding seats: the gateway's pro-rated preview, charged exactly as shown, pending until paid,
the billing date unchanged, stale previews shown again, double submits charged once."""

import uuid
from datetime import datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.urls import reverse

from organizations.models import AuditEvent
from payments.sandbox import engine
from payments.sandbox import services as sandbox_services
from payments.sandbox.models import SandboxInvoice, SandboxPrice, SandboxSubscription
from seats import selectors, services
from seats.exceptions import PaymentFailed, SeatError, StalePreview
from seats.models import SeatChange, SeatReceipt, SeatSubscription
from tests.conftest import World, client_for, settle
from tests.payments.sandbox_helpers import FAILS_ON_CHARGE, GOOD
from tests.seats.conftest import PERIOD_END, START, buy, save_card, terms_of

ADD_URL = "org_seats_add"


def add(world: World, seats: int) -> SeatChange:
    preview = selectors.seat_addition_preview(organization=world.org, seats=seats)
    return services.seats_add(
        actor=world.owner,
        organization=world.org,
        seats=seats,
        idempotency_key=str(uuid.uuid4()),
        terms=terms_of(preview),
    )


@pytest.mark.parametrize(
    ("at", "seats", "expected"),
    [
        (START, 3, 5400),  # the first second: the whole period, 3 × $18.00
        (START + timedelta(days=10), 3, 3600),  # day 10 of 30: 3 × $18 × 20/30 = $36.00
        (START + timedelta(days=15), 1, 900),  # the middle: half of $18.00
        # an odd moment: 2 × 1800 × 838,011 s left / 2,592,000 s = 1163.90… → $11.64
        (START + timedelta(days=20, hours=7, minutes=13, seconds=9), 2, 1164),
        (PERIOD_END - timedelta(hours=1), 3, 8),  # the last hour: 5400 / 720 = 7.5 → 8 cents
    ],
)
def test_the_preview_and_the_charge_are_prorated_to_the_second(
    world: World, at: datetime, seats: int, expected: int
) -> None:
    with time_machine.travel(START, tick=False):
        buy(world.org, world.owner, seats=5)
    with time_machine.travel(at, tick=False):
        preview = selectors.seat_addition_preview(organization=world.org, seats=seats)
        assert preview.amount_due == expected
        assert preview.next_period_amount == (5 + seats) * 1800
        change = services.seats_add(
            actor=world.owner,
            organization=world.org,
            seats=seats,
            idempotency_key=str(uuid.uuid4()),
            terms=terms_of(preview),
        )
    assert (change.status, change.amount) == ("succeeded", expected)
    invoice = SandboxInvoice.objects.get(billing_reason="subscription_update")
    assert (invoice.status, invoice.amount_paid) == ("paid", expected)
    subscription = SeatSubscription.objects.get(organization=world.org)
    assert subscription.quantity == 5 + seats
    # The billing date does not move.
    assert (subscription.current_period_start, subscription.current_period_end) == (
        START,
        PERIOD_END,
    )


def test_the_confirmation_page_shows_charge_card_new_total_and_billing_date(world: World) -> None:
    with time_machine.travel(START, tick=False):
        buy(world.org, world.owner, seats=5)
    with time_machine.travel(START + timedelta(days=10), tick=False):
        response = client_for(world.admin).get(reverse(ADD_URL, args=[world.org.pk]), {"seats": 3})
    page = response.content.decode()
    assert response.status_code == 200
    assert "$36.00" in page  # today
    assert "•••• 4242" in page
    assert "$144.00" in page  # 8 × $18.00 from the next billing date
    assert "Unchanged: 1 Dec 2026, 12:00 UTC" in page
    assert not SandboxInvoice.objects.filter(billing_reason="subscription_update").exists()


def test_htmx_gets_only_the_preview(world: World) -> None:
    buy(world.org, world.owner, seats=5)
    response = client_for(world.owner).get(
        reverse(ADD_URL, args=[world.org.pk]), {"seats": 2}, headers={"HX-Request": "true"}
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in page
    assert 'name="proration_date"' in page


def test_confirming_on_the_page_charges_and_says_so(
    world: World, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(START, tick=False):
        buy(world.org, world.owner, seats=5)
    mail.outbox.clear()
    client = client_for(world.billing)
    with time_machine.travel(START + timedelta(days=10), tick=False):
        preview = selectors.seat_addition_preview(organization=world.org, seats=3)
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                reverse(ADD_URL, args=[world.org.pk]),
                {
                    "seats": 3,
                    "key": str(uuid.uuid4()),
                    "proration_date": int(preview.proration_date.timestamp()),
                    "period_end": int(preview.period_end.timestamp()),
                    "unit_amount": preview.unit_amount,
                },
            )
        assert response.status_code == 302
        page = client.get(response["Location"]).content.decode()
    assert "Added 3 seats: $36.00 charged today (invoice KB-" in page
    assert "billing date stays 1 Dec 2026" in page
    subscription = SeatSubscription.objects.get(organization=world.org)
    assert subscription.quantity == 8
    assert subscription.current_period_end == PERIOD_END
    event = AuditEvent.objects.get(action="seats.add")
    assert (event.actor, event.details["amount"]) == (world.billing, 3600)
    added = [m for m in mail.outbox if "Seats added" in m.subject]
    assert len(added) == 1
    assert "$36.00" in added[0].subject
    assert "billing_manager@acme.test" in added[0].to


def test_a_double_submit_charges_once(world: World) -> None:
    buy(world.org, world.owner, seats=5)
    preview = selectors.seat_addition_preview(organization=world.org, seats=2)
    key = str(uuid.uuid4())
    for _ in range(2):
        change = services.seats_add(
            actor=world.owner,
            organization=world.org,
            seats=2,
            idempotency_key=key,
            terms=terms_of(preview),
        )
        assert change.status == "succeeded"
    assert SandboxInvoice.objects.filter(billing_reason="subscription_update").count() == 1
    assert SeatSubscription.objects.get(organization=world.org).quantity == 7
    assert SandboxSubscription.objects.get().quantity == 7


def test_two_additions_from_the_same_starting_count_are_both_applied(world: World) -> None:
    """Both previews were made at 5 seats; each confirmation adds its own seats to whatever the
    gateway has then, and each is charged its own pro-rated amount."""
    with time_machine.travel(START + timedelta(days=1), tick=False):
        buy(world.org, world.owner, seats=5)
    with time_machine.travel(START + timedelta(days=16), tick=False):
        first = selectors.seat_addition_preview(organization=world.org, seats=3)
        second = selectors.seat_addition_preview(organization=world.org, seats=2)
        assert first.quantity_before == second.quantity_before == 5
        a = services.seats_add(
            actor=world.owner,
            organization=world.org,
            seats=3,
            idempotency_key="a",
            terms=terms_of(first),
        )
        b = services.seats_add(
            actor=world.admin,
            organization=world.org,
            seats=2,
            idempotency_key="b",
            terms=terms_of(second),
        )
    assert (a.quantity_before, a.quantity_after, b.quantity_before, b.quantity_after) == (
        5,
        8,
        8,
        10,
    )
    assert SandboxSubscription.objects.get().quantity == 10
    assert SeatSubscription.objects.get(organization=world.org).quantity == 10
    # 30-day period started on day 1 (1 Nov 12:00 → ... the sandbox's own month); each charge is
    # its own seats × time left, whatever the other did.
    assert a.amount == first.amount_due
    assert b.amount == second.amount_due
    assert a.amount * 2 == b.amount * 3


def test_a_declined_charge_changes_nothing_until_the_invoice_is_paid(
    world: World, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(START, tick=False):
        buy(world.org, world.owner, seats=5)
        save_card(world.org, FAILS_ON_CHARGE)  # the new default card fails when charged
    with time_machine.travel(START + timedelta(days=10), tick=False):
        preview = selectors.seat_addition_preview(organization=world.org, seats=3)
        response = client_for(world.owner).post(
            reverse(ADD_URL, args=[world.org.pk]),
            {
                "seats": 3,
                "key": str(uuid.uuid4()),
                "proration_date": int(preview.proration_date.timestamp()),
                "period_end": int(preview.period_end.timestamp()),
                "unit_amount": preview.unit_amount,
            },
        )
        assert response.status_code == 400
        assert "Your card was declined. No seats were added." in response.content.decode()
        settle()
        subscription = SeatSubscription.objects.get(organization=world.org)
        assert (subscription.quantity, subscription.seats) == (5, 5)
        assert subscription.pending_quantity == 8  # waiting for the invoice, as Stripe shows it
        assert SandboxSubscription.objects.get().quantity == 5
        change = SeatChange.objects.get(kind="add")
        assert change.status == "failed"
        assert change.failure_message == "Your card was declined."
        invoice = SandboxInvoice.objects.get(billing_reason="subscription_update")
        assert invoice.status == "open"
        assert AuditEvent.objects.filter(action="seats.add_failed").count() == 1
        assert not AuditEvent.objects.filter(action="seats.add").exists()
        # Another addition waits for that invoice rather than stacking a second one.
        with pytest.raises(SeatError, match="waiting for their invoice"):
            add(world, 1)
        tab = client_for(world.owner).get(reverse("org_seats", args=[world.org.pk]))
        assert "waiting for its invoice to be paid" in tab.content.decode()
    # Paying the open invoice with a good card brings the seats (and the receipt) at last.

    mail.outbox.clear()
    with time_machine.travel(START + timedelta(days=10, hours=2), tick=False):
        assert (
            sandbox_services.invoice_pay_with_card(invoice_id=invoice.id, card=GOOD).error is None
        )
        with django_capture_on_commit_callbacks(execute=True):
            settle()
    subscription.refresh_from_db()
    assert (subscription.quantity, subscription.pending_quantity) == (8, None)
    assert subscription.current_period_end == PERIOD_END
    change.refresh_from_db()
    assert (change.status, change.amount) == ("succeeded", 3600)
    assert AuditEvent.objects.get(action="seats.add").actor == world.owner
    assert len([m for m in mail.outbox if "Seats added" in m.subject]) == 1


def test_an_unpaid_addition_lapses(world: World) -> None:

    with time_machine.travel(START, tick=False):
        buy(world.org, world.owner, seats=5)
        save_card(world.org, FAILS_ON_CHARGE)
        with pytest.raises(PaymentFailed):
            add(world, 2)
    with time_machine.travel(START + timedelta(days=1, hours=1), tick=False):
        engine.tick()
        settle()
    subscription = SeatSubscription.objects.get(organization=world.org)
    assert (subscription.quantity, subscription.pending_quantity) == (5, None)
    assert SandboxInvoice.objects.get(billing_reason="subscription_update").status == "void"


def test_a_price_change_since_the_preview_is_shown_again_before_charging(world: World) -> None:
    buy(world.org, world.owner, seats=5)
    preview = selectors.seat_addition_preview(organization=world.org, seats=2)
    SandboxPrice.objects.update(unit_amount=2000)  # the price moved at the gateway meanwhile
    with pytest.raises(StalePreview) as stale:
        services.seats_add(
            actor=world.owner,
            organization=world.org,
            seats=2,
            idempotency_key="k",
            terms=terms_of(preview),
        )
    assert stale.value.preview.unit_amount == 2000
    assert not SandboxInvoice.objects.filter(billing_reason="subscription_update").exists()
    assert not SeatChange.objects.filter(kind="add").exists()


def test_a_period_change_since_the_preview_is_shown_again_on_the_page(world: World) -> None:

    with time_machine.travel(START, tick=False):
        buy(world.org, world.owner, seats=5)
    with time_machine.travel(PERIOD_END - timedelta(minutes=5), tick=False):
        preview = selectors.seat_addition_preview(organization=world.org, seats=2)
    with time_machine.travel(PERIOD_END + timedelta(minutes=1), tick=False):
        engine.tick()  # the renewal: a new period
        settle()
        response = client_for(world.owner).post(
            reverse(ADD_URL, args=[world.org.pk]),
            {
                "seats": 2,
                "key": str(uuid.uuid4()),
                "proration_date": int(preview.proration_date.timestamp()),
                "period_end": int(preview.period_end.timestamp()),
                "unit_amount": preview.unit_amount,
            },
        )
    page = response.content.decode()
    assert response.status_code == 200
    assert "changed since you looked, so nothing was charged" in page
    assert "$36.00" in page  # 2 × $18.00, nearly the whole new period
    assert "Unchanged: 1 Jan 2027" in page
    assert not SandboxInvoice.objects.filter(billing_reason="subscription_update").exists()


def test_an_old_preview_is_recomputed(world: World) -> None:
    with time_machine.travel(START, tick=False):
        buy(world.org, world.owner, seats=5)
        preview = selectors.seat_addition_preview(organization=world.org, seats=1)
    with (
        time_machine.travel(START + timedelta(minutes=16), tick=False),
        pytest.raises(StalePreview),
    ):
        services.seats_add(
            actor=world.owner,
            organization=world.org,
            seats=1,
            idempotency_key="late",
            terms=terms_of(preview),
        )
    with time_machine.travel(START + timedelta(minutes=14), tick=False):
        change = services.seats_add(
            actor=world.owner,
            organization=world.org,
            seats=1,
            idempotency_key="in-time",
            terms=terms_of(preview),
        )
    # Charged from the preview's moment: exactly the amount shown.
    assert change.amount == preview.amount_due == 1800


@pytest.mark.parametrize("value", ["0", "-2", "2.5", "three", "", "10001", "1e3"])
def test_bad_counts_are_form_errors(world: World, value: str) -> None:
    buy(world.org, world.owner, seats=5)
    client = client_for(world.owner)
    page = client.get(reverse(ADD_URL, args=[world.org.pk]), {"seats": value})
    assert page.status_code == 400
    posted = client.post(
        reverse(ADD_URL, args=[world.org.pk]),
        {
            "seats": value,
            "key": str(uuid.uuid4()),
            "proration_date": int(START.timestamp()),
            "period_end": 2_000_000_000,
            "unit_amount": 1800,
        },
    )
    assert posted.status_code == 400
    assert SandboxSubscription.objects.get().quantity == 5
    assert not SandboxInvoice.objects.filter(billing_reason="subscription_update").exists()


def test_without_seats_adding_sends_you_to_buy(world: World) -> None:
    response = client_for(world.owner).get(reverse(ADD_URL, args=[world.org.pk]), {"seats": 1})
    assert response.status_code == 302
    assert response["Location"] == reverse("org_seats", args=[world.org.pk])


def test_receipts_are_recorded_once_whoever_comes_first(world: World) -> None:
    buy(world.org, world.owner, seats=5)
    add(world, 2)
    settle()
    settle()
    assert SeatReceipt.objects.filter(kind="add").count() == 1
    assert AuditEvent.objects.filter(action="seats.add").count() == 1


def test_htmx_shows_errors_in_the_partial(world: World) -> None:
    buy(world.org, world.owner, seats=5)
    response = client_for(world.owner).get(
        reverse(ADD_URL, args=[world.org.pk]), {"seats": "0"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert "Enter at least 1 seat." in response.content.decode()
