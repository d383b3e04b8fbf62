"""Issue 21, defect 5: a renewal that the gateway cannot finalize (Stripe: a customer location
its tax rules reject, https://docs.stripe.com/tax/customer-locations, "Invoice finalization
errors") stays a draft with its last_finalization_error and invoice.finalization_failed is sent.
Here it is overdue with its reason, staff hear once, it counts as one failed attempt (grace by
the usual rule: a second failure or a week overdue), and "Pay now" pays it once the billing
address is fixed. Events arrive reversed, twice and a day late."""

import uuid
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.urls import reverse

from billing.services import billing_details_update
from dunning import sweeps
from invoices import selectors
from invoices.models import Invoice
from organizations.models import Organization
from payments.sandbox import engine
from payments.sandbox.models import SandboxInvoice, SandboxSubscription
from seats import services as seat_services
from seats.models import SeatPlan
from tests.conftest import World, client_for
from tests.invoices.bad_order import deliver_badly, take_events
from tests.invoices.conftest import T0, Step, customer_of, subjects

pytestmark = pytest.mark.django_db
State = Organization.BillingState
RENEWAL = T0.replace(month=4)
STAFF = "staff@kilo.test"
TOLD = "A seat invoice for Acme Robotics could not be issued"


def address(world: World, postal_code: str) -> None:
    billing_details_update(
        actor=world.owner,
        organization=world.org,
        address_line1="1 Market St",
        city="San Francisco",
        postal_code=postal_code,
        country="US",
    )


def renewal_not_finalized(world: World, step: Step, traveller: Any) -> Invoice:
    SeatPlan.objects.get_or_create(
        code="teams", defaults={"name": "Teams", "unit_amount": 1800, "position": 1}
    )
    customer_of(world.org)
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
    step(lambda: address(world, "9410"))  # four digits: no US tax location
    mail.outbox.clear()
    traveller.move_to(RENEWAL + timedelta(seconds=30))
    engine.tick()
    traveller.move_to(RENEWAL + timedelta(hours=1, seconds=30))
    engine.tick()
    events = take_events()
    types = [event["type"] for event in events]
    assert "invoice.finalization_failed" in types
    assert "invoice.finalized" not in types
    traveller.move_to(RENEWAL + timedelta(days=1))
    step(lambda: deliver_badly(events))
    return Invoice.objects.get(billing_reason="subscription_cycle")


def test_a_renewal_that_cannot_be_finalized_is_overdue_with_its_reason_and_staff_hear_once(
    world: World, step: Step, settings: Any
) -> None:
    settings.ADMINS = [("Kilo Billing staff", STAFF)]
    with time_machine.travel(T0, tick=False) as traveller:
        invoice = renewal_not_finalized(world, step, traveller)
    assert (invoice.status, invoice.attempt_count) == ("draft", 0)
    assert invoice.finalization_error_code == "customer_tax_location_invalid"
    assert invoice.failed_attempts == 1
    assert invoice.first_failed_at is not None
    assert list(selectors.overdue_invoices(organization=world.org)) == [invoice]
    # One failed attempt: overdue, not yet grace (docs/decisions.md).
    world.org.refresh_from_db()
    assert world.org.billing_state == State.ACTIVE
    assert SandboxSubscription.objects.get().status == "active"
    to_staff = [message for message in mail.outbox if message.to == [STAFF]]
    assert len(to_staff) == 1
    assert "could not be finalized" in to_staff[0].subject
    assert "customer_tax_location_invalid" in to_staff[0].body
    assert subjects().count(TOLD) == 1
    told = next(message for message in mail.outbox if message.subject == TOLD)
    assert "5-digit ZIP code" in told.body
    assert world.billing.email in told.to
    # The invoice and the Account status say why.
    billing_manager = client_for(world.billing)
    page = billing_manager.get(reverse("org_invoice", args=[world.org.pk, invoice.pk]))
    assert "could not issue it" in page.content.decode()
    assert "5-digit ZIP code" in page.content.decode()
    status = billing_manager.get(reverse("org_billing", args=[world.org.pk])).content.decode()
    assert "not issued: the billing address cannot be used to calculate tax" in status
    assert "Payments are up to date" not in status


def test_pay_now_says_why_until_the_address_is_fixed_then_pays_it(world: World, step: Step) -> None:
    with time_machine.travel(T0, tick=False) as traveller:
        invoice = renewal_not_finalized(world, step, traveller)
        billing_manager = client_for(world.billing)
        pay_url = reverse("org_pay_now", args=[world.org.pk])
        assert "could not be issued" in billing_manager.get(pay_url).content.decode()
        refused = step(lambda: billing_manager.post(pay_url, {"confirm": "on"}, follow=True))
        assert refused.status_code == 200
        assert "could not be issued: the billing address" in refused.content.decode()
        invoice.refresh_from_db()
        assert invoice.status == "draft"
        step(lambda: address(world, "94107"))
        paid = step(lambda: billing_manager.post(pay_url, {"confirm": "on"}))
        assert paid.status_code == 302
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid) == ("paid", 9000)
    assert SandboxInvoice.objects.get(pk=invoice.gateway_id).status == "paid"
    assert not selectors.overdue_invoices(organization=world.org).exists()


def test_a_week_not_finalized_starts_grace(world: World, step: Step) -> None:
    with time_machine.travel(T0, tick=False) as traveller:
        invoice = renewal_not_finalized(world, step, traveller)
        traveller.move_to(RENEWAL + timedelta(days=7, hours=2))
        step(sweeps.dunning_sweep)
    world.org.refresh_from_db()
    assert world.org.billing_state == State.GRACE
    assert invoice.status == "draft"
