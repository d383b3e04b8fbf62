"""Issue 21, defect 2: with Stripe's "mark the subscription as unpaid" (what the README asks
for), Stripe keeps billing every cycle as a draft that nobody charges, and makes the subscription
active again only when the most recent invoice is paid
(https://docs.stripe.com/billing/subscriptions/overview#unpaid). So those drafts are owed,
"Pay now" finalizes and pays them (the most recent included), the organization comes back only
when nothing is owed, and the seats of an unpaid subscription are not live. Events arrive
reversed, twice and a day late."""

import uuid
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.urls import reverse

from dunning import sweeps
from invoices import selectors
from invoices.models import Invoice
from organizations.models import Membership, Organization
from payments.sandbox import engine
from payments.sandbox.models import SandboxInvoice, SandboxSubscription
from seats import selectors as seat_selectors
from seats import services as seat_services
from seats.models import SeatPlan, SeatReceipt, SeatSubscription
from tests.conftest import World, client_for
from tests.invoices.bad_order import deliver_badly, take_events
from tests.invoices.conftest import T0, Step, card_use, customer_of, subjects
from tests.payments.sandbox_helpers import FAILS_ON_CHARGE, GOOD

pytestmark = pytest.mark.django_db
State = Organization.BillingState
RENEWAL = T0.replace(month=4)
FIRST_ATTEMPT = RENEWAL + timedelta(hours=1, seconds=30)
NEXT_RENEWAL = T0.replace(month=5)


def buy_seats(world: World, step: Step) -> Any:
    SeatPlan.objects.get_or_create(
        code="teams", defaults={"name": "Teams", "unit_amount": 1800, "position": 1}
    )
    customer = customer_of(world.org)
    step(
        lambda: seat_services.seats_purchase(
            actor=world.owner,
            organization=world.org,
            plan=SeatPlan.objects.get(code="teams"),
            seats=5,
            idempotency_key=str(uuid.uuid4()),
            success_url="http://testserver/",
            cancel_url="http://testserver/",
        )
    )
    return customer


def unpaid_with_a_new_cycle(world: World, step: Step, traveller: Any) -> tuple[Any, Invoice]:
    """The renewal declined on every retry (the subscription unpaid, the organization
    suspended), then the next cycle: its events taken out, delivered badly a day late."""
    customer = buy_seats(world, step)
    card_use(customer, FAILS_ON_CHARGE)
    for moment in (RENEWAL + timedelta(seconds=30), FIRST_ATTEMPT):
        traveller.move_to(moment)
        step(engine.tick)
    for days in (1, 3, 5):
        traveller.move_to(FIRST_ATTEMPT + timedelta(days=days, minutes=1))
        step(engine.tick)
        step(sweeps.dunning_sweep)
    assert SandboxSubscription.objects.get().status == "unpaid"
    world.org.refresh_from_db()
    assert world.org.billing_state == State.SUSPENDED
    old = Invoice.objects.get(billing_reason="subscription_cycle")
    traveller.move_to(NEXT_RENEWAL + timedelta(seconds=30))
    engine.tick()
    events = take_events()
    assert "invoice.created" in [event["type"] for event in events]
    traveller.move_to(NEXT_RENEWAL + timedelta(days=1))
    step(lambda: deliver_badly(events))
    return customer, old


def test_the_drafts_of_an_unpaid_subscription_are_owed_and_its_seats_are_not_live(
    world: World, step: Step
) -> None:
    with time_machine.travel(T0, tick=False) as traveller:
        _, old = unpaid_with_a_new_cycle(world, step, traveller)
        seats = SeatSubscription.objects.get(organization=world.org)
        assert seats.status == "unpaid"
        # Not live: nobody holds a seat (the credits cannot be spent), yet nothing has ended.
        assert (seats.on_hold, seats.is_live, seats.has_ended, seats.seats) == (
            True,
            False,
            False,
            0,
        )
        assert seats.ended_at is None
        member = Membership.objects.get(user=world.member, organization=world.org)
        assert not seat_selectors.member_has_seat(membership=member)
        draft = Invoice.objects.get(billing_reason="subscription_cycle", status="draft")
        assert (draft.auto_advance, draft.amount_remaining) == (False, 9000)
        assert list(selectors.overdue_invoices(organization=world.org)) == [old, draft]
        # Stripe does not finalize it by itself, even hours later.
        traveller.move_to(NEXT_RENEWAL + timedelta(days=1, hours=3))
        step(engine.tick)
        draft.refresh_from_db()
        assert draft.status == "draft"
        page = client_for(world.billing).get(reverse("org_pay_now", args=[world.org.pk]))
        body = page.content.decode()
        assert "$180.00" in body  # the old renewal and the new draft
        assert "draft: issued now" in body


def test_paying_the_old_invoice_alone_leaves_the_subscription_unpaid_and_the_organization_out(
    world: World, step: Step
) -> None:
    with time_machine.travel(T0, tick=False) as traveller:
        customer, old = unpaid_with_a_new_cycle(world, step, traveller)
        card_use(customer, GOOD)
        # Paid elsewhere (Stripe's hosted invoice page): only the older invoice.
        engine_invoice = SandboxInvoice.objects.get(pk=old.gateway_id)
        with engine.action():
            assert engine.invoice_attempt(engine_invoice) is None
        events = take_events()
        traveller.move_to(NEXT_RENEWAL + timedelta(days=2))
        step(lambda: deliver_badly(events))
        old.refresh_from_db()
        assert old.status == "paid"
        assert SandboxSubscription.objects.get().status == "unpaid"
        world.org.refresh_from_db()
        assert world.org.billing_state == State.SUSPENDED
        draft = Invoice.objects.get(status="draft")
        assert list(selectors.overdue_invoices(organization=world.org)) == [draft]
        assert SeatSubscription.objects.get(organization=world.org).seats == 0


def test_pay_now_pays_every_overdue_invoice_the_most_recent_included_and_the_seats_come_back(
    world: World,
    step: Step,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with time_machine.travel(T0, tick=False) as traveller:
        customer, old = unpaid_with_a_new_cycle(world, step, traveller)
        draft = Invoice.objects.get(status="draft")
        card_use(customer, GOOD)
        mail.outbox.clear()
        # The request's own emails are sent; the gateway's events wait, to come badly below.
        monkeypatch.setattr(engine, "enqueue_after_commit", lambda *args, **kwargs: None)
        with django_capture_on_commit_callbacks(execute=True):
            response = client_for(world.billing).post(
                reverse("org_pay_now", args=[world.org.pk]), {"confirm": "on"}
            )
        assert response.status_code == 302
        # Within the request: both paid, the subscription active again, the seats back.
        for invoice in (old, draft):
            invoice.refresh_from_db()
            assert (invoice.status, invoice.amount_remaining) == ("paid", 0)
        assert draft.number.startswith("KB-")
        assert SandboxSubscription.objects.get().status == "active"
        seats = SeatSubscription.objects.get(organization=world.org)
        assert (seats.status, seats.seats) == ("active", 5)
        world.org.refresh_from_db()
        assert world.org.billing_state == State.ACTIVE
        # Then the gateway's events, reversed, twice and a day late, change nothing.
        events = take_events()
        assert {"invoice.paid", "customer.subscription.updated"} <= {e["type"] for e in events}
        traveller.move_to(NEXT_RENEWAL + timedelta(days=2))
        step(lambda: deliver_badly(events))
        seats.refresh_from_db()
        assert (seats.status, seats.seats) == ("active", 5)
        world.org.refresh_from_db()
        assert world.org.billing_state == State.ACTIVE
        assert selectors.overdue_invoices(organization=world.org).count() == 0
        assert sorted(
            SeatReceipt.objects.filter(kind="renewal").values_list("gateway_invoice_id", flat=True)
        ) == sorted([old.gateway_id, draft.gateway_id])
        assert subjects().count("Acme Robotics is active again") == 1


def test_a_renewal_draft_in_its_first_hour_is_not_overdue(world: World, step: Step) -> None:
    with time_machine.travel(T0, tick=False) as traveller:
        buy_seats(world, step)
        traveller.move_to(RENEWAL + timedelta(minutes=10))
        step(engine.tick)
        draft = Invoice.objects.get(billing_reason="subscription_cycle")
        assert (draft.status, draft.auto_advance) == ("draft", True)
        assert not selectors.overdue_invoices(organization=world.org).exists()
        assert SeatSubscription.objects.get(organization=world.org).seats == 5
