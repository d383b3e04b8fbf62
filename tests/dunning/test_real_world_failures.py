"""The lifecycle rule of DESIGN.md with what real payments do: grace after N failed attempts, a
hard decline or no card on a renewal (Stripe does not retry those), or a week overdue; overdue
(and "pay now") from the first failure; a payment waiting for 3-D Secure is not a failure; a lost
dispute leaves a seat invoice unpaid; seats Stripe ended after its retries come back when paid."""

import uuid
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse

from dunning import sweeps
from dunning.models import LifecycleTransition
from invoices import selectors
from invoices.models import Invoice
from organizations.models import Organization
from payments.sandbox import engine
from payments.sandbox.models import SandboxEvent, SandboxInvoice, SandboxSubscription
from seats import services as seat_services
from seats.models import SeatPlan, SeatSubscription
from tests.conftest import World, client_for
from tests.invoices.conftest import T0, Step, card_use, customer_of, subjects, subscribe
from tests.payments.sandbox_helpers import (
    AUTHENTICATION,
    EXPIRED_CARD,
    FAILS_ON_CHARGE,
    GOOD,
    LOST_CARD,
)

State = Organization.BillingState
pytestmark = pytest.mark.django_db
RENEWAL = T0.replace(month=4)
FIRST_ATTEMPT = RENEWAL + timedelta(hours=1, seconds=30)


def state(world: World) -> str:
    world.org.refresh_from_db()
    return world.org.billing_state


def renewal_attempted(step: Step, traveller: Any) -> None:
    """To the renewal (a draft for an hour), then its first payment attempt."""
    traveller.move_to(RENEWAL + timedelta(seconds=30))
    step(engine.tick)
    traveller.move_to(FIRST_ATTEMPT)
    step(engine.tick)


def renewal_invoice() -> Invoice:
    return Invoice.objects.get(billing_reason="subscription_cycle")


def charges_failed() -> int:
    return SandboxEvent.objects.filter(type="charge.failed").count()


def test_a_renewal_on_a_lost_card_starts_grace_without_a_second_attempt(
    world: World, step: Step
) -> None:
    with time_machine.travel(T0, tick=False) as traveller:
        customer = customer_of(world.org)
        step(lambda: subscribe(customer, world.org))
        card_use(customer, LOST_CARD)  # the card page: stands in for Stripe's lost-card token
        mail.outbox.clear()
        renewal_attempted(step, traveller)
        invoice = renewal_invoice()
        assert (invoice.attempt_count, invoice.payment_decline_code) == (1, "lost_card")
        assert state(world) == State.GRACE
        assert world.org.grace_ends_at == FIRST_ATTEMPT + timedelta(days=3)
        transition = LifecycleTransition.objects.get(to_state=State.GRACE)
        assert "declined (lost_card)" in transition.reason
        assert subjects() == [f"Payment failed for Acme Robotics: invoice {invoice.number}"]
        body = mail.outbox[0].body
        assert "grace period" in body
        # Said as it is: no retry promised with this card, no "failed repeatedly" after one.
        assert "The bank declined the card for good (lost card): we will not try it again" in body
        assert "try the card again" not in body
        assert "failed repeatedly" not in body
        page = client_for(world.owner).get(reverse("org_overview", args=[world.org.pk]))
        assert "declined the card for good (lost card)" in page.content.decode()
        assert "the card is tried again on" not in page.content.decode()
        # "Pay now" is offered from this first failure.
        assert list(selectors.overdue_invoices(organization=world.org)) == [invoice]
        pay = client_for(world.billing).get(reverse("org_pay_now", args=[world.org.pk]))
        assert invoice.number in pay.content.decode()
        declined = f"The bank declined {invoice.number} for good (lost card)"
        assert declined in pay.content.decode()
        # The next scheduled retry is not made with the same card (no second charge).
        traveller.move_to(FIRST_ATTEMPT + timedelta(days=1, minutes=1))
        step(engine.tick)
        assert charges_failed() == 1
        assert renewal_invoice().attempt_count == 2  # counted by the gateway, not made
        assert subjects() == [f"Payment failed for Acme Robotics: invoice {invoice.number}"]
        # Paying with a new card restores it at once.
        card_use(customer, GOOD)
        response = step(
            lambda: client_for(world.billing).post(
                reverse("org_pay_now", args=[world.org.pk]), {"confirm": "on"}
            )
        )
        assert response.status_code == 302
        assert state(world) == State.ACTIVE


def test_a_soft_decline_is_overdue_at_once_and_grace_waits_for_the_second(
    world: World, step: Step
) -> None:
    with time_machine.travel(T0, tick=False) as traveller:
        customer = customer_of(world.org)
        step(lambda: subscribe(customer, world.org))
        card_use(customer, FAILS_ON_CHARGE)
        renewal_attempted(step, traveller)
        assert state(world) == State.ACTIVE
        assert selectors.overdue_invoices(organization=world.org).count() == 1
        billing = client_for(world.owner).get(reverse("org_billing", args=[world.org.pk]))
        assert "Payments are up to date" not in billing.content.decode()
        assert reverse("org_pay_now", args=[world.org.pk]) in billing.content.decode()
        traveller.move_to(FIRST_ATTEMPT + timedelta(days=1, minutes=1))
        step(engine.tick)
        assert state(world) == State.GRACE
        assert "2 failed payment attempts" in LifecycleTransition.objects.get().reason


@pytest.mark.parametrize(
    ("card", "why"),
    [(EXPIRED_CARD, "declined (expired_card)"), (None, "no card to charge")],
)
def test_an_expired_card_or_no_card_starts_grace_at_once(
    world: World, step: Step, card: Any, why: str
) -> None:
    # expired_card: the product's hard decline (Stripe retries it, but it never pays without a
    # new card). No card: "Stripe doesn't retry" (https://docs.stripe.com/billing/
    # revenue-recovery/smart-retries).
    with time_machine.travel(T0, tick=False) as traveller:
        customer = customer_of(world.org)
        step(lambda: subscribe(customer, world.org))
        if card is None:
            customer.default_payment_method = None
            customer.save()
        else:
            card_use(customer, card)
        renewal_attempted(step, traveller)
        assert state(world) == State.GRACE
        assert why in LifecycleTransition.objects.get().reason


def test_a_renewal_waiting_for_authentication_is_not_a_failure(world: World, step: Step) -> None:
    # Off-session, the payer is emailed the link; the invoice's hosted page offers the
    # authentication (https://docs.stripe.com/billing/subscriptions/overview
    # #payments-requiring-3d-secure).
    with time_machine.travel(T0, tick=False) as traveller:
        customer = customer_of(world.org)
        step(lambda: subscribe(customer, world.org))
        card_use(customer, AUTHENTICATION)
        mail.outbox.clear()
        renewal_attempted(step, traveller)
        invoice = renewal_invoice()
        assert (invoice.status, invoice.attempt_count, invoice.awaiting_authentication) == (
            "open",
            1,
            True,
        )
        assert state(world) == State.ACTIVE
        assert subjects() == ["Confirm the payment for Acme Robotics with your bank"]
        assert invoice.hosted_invoice_url in mail.outbox[0].body
        assert not any(s.startswith("Payment failed") for s in subjects())
        # Pay now is offered, and sends the payer to the bank's page, then back to Invoices.
        pay_url = reverse("org_pay_now", args=[world.org.pk])
        page = client_for(world.billing).get(pay_url).content.decode()
        assert "waits for your bank" in page
        bank = client_for(world.billing).post(pay_url, {"confirm": "on"})["Location"]
        assert "/sandbox/authenticate/" in bank
        back = step(lambda: Client().post(bank, {"outcome": "complete"}))
        assert back["Location"].endswith(reverse("org_invoices", args=[world.org.pk]))
        invoice.refresh_from_db()
        assert (invoice.status, invoice.awaiting_authentication) == ("paid", False)
        assert state(world) == State.ACTIVE


def test_a_renewal_unpaid_for_a_week_starts_grace(world: World, step: Step) -> None:
    with time_machine.travel(T0, tick=False) as traveller:
        customer = customer_of(world.org)
        step(lambda: subscribe(customer, world.org))
        card_use(customer, AUTHENTICATION)
        renewal_attempted(step, traveller)
        mail.outbox.clear()
        traveller.move_to(FIRST_ATTEMPT + timedelta(days=6, hours=23))
        step(engine.tick)
        assert step(sweeps.dunning_sweep)["graced"] == 0
        traveller.move_to(FIRST_ATTEMPT + timedelta(days=7, minutes=1))
        assert step(sweeps.dunning_sweep)["graced"] == 1
        assert state(world) == State.GRACE
        assert "overdue for 7 days" in LifecycleTransition.objects.get().reason
        assert "Acme Robotics is in a grace period" in subjects()[-1]
        assert step(sweeps.dunning_sweep)["graced"] == 0  # once


def test_the_week_overdue_sweep_reads_its_partial_index(world: World) -> None:

    overdue = Invoice.objects.filter(
        kind=Invoice.Kind.SEAT_SUBSCRIPTION,
        status__in=["open", "uncollectible"],
        first_failed_at__isnull=False,
        first_failed_at__lte=T0,
    )
    sql, params = overdue.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "invoice_overdue_since" in plan


def test_a_lost_dispute_on_a_seat_invoice_is_owed_again_and_pay_now_repays_it(
    world: World, step: Step, settings: Any
) -> None:
    # charge.dispute.closed with status lost (https://docs.stripe.com/disputes/how-disputes-work)
    settings.STRIPE_SECRET_KEY = ""
    with time_machine.travel(T0, tick=False):
        customer = customer_of(world.org)
        step(lambda: subscribe(customer, world.org))
        invoice = Invoice.objects.get()
        mail.outbox.clear()
        step(lambda: call_command("sandbox_dispute", invoice=invoice.number))
        invoice.refresh_from_db()
        assert invoice.dispute_status == "needs_response"
        assert state(world) == State.ACTIVE  # under review: not owed yet
        step(lambda: call_command("sandbox_dispute", invoice=invoice.number, close="lost"))
        invoice.refresh_from_db()
        assert invoice.charged_back
        assert state(world) == State.GRACE
        assert "charged back" in LifecycleTransition.objects.get().reason
        assert f"Payment taken back for Acme Robotics: invoice {invoice.number}" in subjects()
        page = client_for(world.owner).get(reverse("org_invoice", args=[world.org.pk, invoice.pk]))
        assert "Lost (charged back): $90.00 USD" in page.content.decode()
        pay_url = reverse("org_pay_now", args=[world.org.pk])
        assert "charged back" in client_for(world.billing).get(pay_url).content.decode()
        step(lambda: client_for(world.billing).post(pay_url, {"confirm": "on"}))
        assert state(world) == State.ACTIVE
        repayment = Invoice.objects.get(kind=Invoice.Kind.SEAT_REPAYMENT)
        assert (repayment.status, repayment.amount_paid) == ("paid", 9000)
        invoice.refresh_from_db()
        assert invoice.dispute_repaid_at is not None
        assert not selectors.overdue_invoices(organization=world.org).exists()


def test_a_refunded_seat_invoice_shows_it_and_the_contacts_are_told(
    world: World, step: Step, settings: Any
) -> None:
    settings.STRIPE_SECRET_KEY = ""
    with time_machine.travel(T0, tick=False):
        customer = customer_of(world.org)
        step(lambda: subscribe(customer, world.org))
        invoice = Invoice.objects.get()
        mail.outbox.clear()
        step(lambda: call_command("sandbox_refund", invoice=invoice.number, amount_usd="18"))
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_refunded) == ("paid", 1800)
    page = client_for(world.owner).get(reverse("org_invoice", args=[world.org.pk, invoice.pk]))
    assert "Refunded</dt><dd>$18.00 USD" in page.content.decode()
    assert subjects() == [f"Invoice {invoice.number}: $18.00 refunded"]
    assert sorted(mail.outbox[0].to) == sorted([world.owner.email, world.billing.email])
    assert state(world) == State.ACTIVE


def test_seats_stripe_ended_after_its_retries_start_again_when_paid(
    world: World, step: Step, settings: Any
) -> None:
    # With the dashboard's "cancel the subscription" after the last retry
    # (https://docs.stripe.com/billing/subscriptions/overview#settings), paying re-creates it
    # with the same seats and a billing date from the payment (DESIGN.md, the lifecycle).
    settings.SANDBOX_END_OF_RETRIES = "cancel"
    SeatPlan.objects.get_or_create(
        code="teams", defaults={"name": "Teams", "unit_amount": 1800, "position": 1}
    )
    with time_machine.travel(T0, tick=False) as traveller:
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
        card_use(customer, FAILS_ON_CHARGE)
        renewal_attempted(step, traveller)
        for days in (1, 3, 5):
            traveller.move_to(FIRST_ATTEMPT + timedelta(days=days, minutes=1))
            step(engine.tick)
            step(sweeps.dunning_sweep)
        seats = SeatSubscription.objects.get(organization=world.org)
        assert seats.status == "canceled"
        assert state(world) == State.SUSPENDED
        old = renewal_invoice()
        assert old.status == "open"

        later = FIRST_ATTEMPT + timedelta(days=9)
        traveller.move_to(later)
        card_use(customer, GOOD)
        pay_url = reverse("org_pay_now", args=[world.org.pk])
        page = client_for(world.billing).get(pay_url).content.decode()
        assert "starts the same 5 seats again" in page
        assert "$90.00" in page
        response = step(lambda: client_for(world.billing).post(pay_url, {"confirm": "on"}))
        assert response.status_code == 302
    assert state(world) == State.ACTIVE
    seats.refresh_from_db()
    assert (seats.status, seats.quantity, seats.seats) == ("active", 5, 5)
    assert seats.current_period_start == later
    assert seats.gateway_subscription_id != old.gateway_subscription_id
    old.refresh_from_db()
    assert old.status == "void"
    assert SandboxSubscription.objects.filter(status="active").count() == 1
    restarted = SandboxInvoice.objects.filter(billing_reason="subscription_create").order_by(
        "created"
    )
    assert [i.amount_paid for i in restarted] == [9000, 9000]
