"""Issue 21, defect 3: a customer deleted in Stripe's dashboard (customer.deleted, which cancels
its subscriptions at once: https://docs.stripe.com/api/customers/delete). The billing profile
forgets it, the seats end here, the owners and billing managers are told once, and the next
purchase makes a new customer; a call that finds the customer gone before the event came
(resource_missing, https://docs.stripe.com/error-codes) does the same instead of failing. Events
arrive reversed, twice and a day late."""

import uuid
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.core.management import call_command
from django.urls import reverse

from billing.models import BillingProfile
from credits.services import account_for, credits_purchase
from organizations.models import AuditEvent
from payments.gateway import RESOURCE_MISSING, GatewayError
from payments.sandbox.gateway import SandboxGateway
from payments.sandbox.models import SandboxCustomer, SandboxSubscription
from seats import services as seat_services
from seats.models import SeatPlan, SeatSubscription
from tests.conftest import World, client_for
from tests.invoices.bad_order import deliver_badly, take_events
from tests.invoices.conftest import T0, Step, customer_of, subjects

pytestmark = pytest.mark.django_db
REMOVED = "Acme Robotics: your saved payment details were removed"
ENDED = "Seats ended for Acme Robotics"


def with_seats(world: World, step: Step) -> SandboxCustomer:
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
    assert SeatSubscription.objects.get(organization=world.org).seats == 5
    mail.outbox.clear()
    return customer


def delete_in_the_dashboard(world: World) -> list[dict[str, Any]]:
    call_command("sandbox_customer_delete", org=str(world.org.pk), stdout=StringIO())
    events = take_events()
    assert sorted(e["type"] for e in events if e["type"].startswith("customer.")) == [
        "customer.deleted",
        "customer.subscription.deleted",
    ]
    return events


def profile(world: World) -> BillingProfile:
    return BillingProfile.objects.get(organization=world.org)


def buy_credits(world: World) -> Any:
    return credits_purchase(
        actor=world.owner,
        account=account_for(organization=world.org),
        amount_cents=5000,
        idempotency_key=str(uuid.uuid4()),
        success_url="http://testserver/credits/{PURCHASE_ID}/",
        cancel_url="http://testserver/credits/",
    )


def test_customer_deleted_forgets_the_customer_ends_the_seats_and_tells_the_contacts_once(
    world: World, step: Step
) -> None:
    with time_machine.travel(T0, tick=False) as traveller:
        customer = with_seats(world, step)
        events = delete_in_the_dashboard(world)
        traveller.move_to(T0 + timedelta(days=1))
        step(lambda: deliver_badly(events))  # customer.deleted first, each twice, a day late
    row = profile(world)
    assert (row.gateway_customer_id, row.former_gateway_customer_id) == ("", customer.id)
    seats = SeatSubscription.objects.get(organization=world.org)
    assert (seats.status, seats.seats, seats.has_ended) == ("canceled", 0, True)
    assert seats.ended_at is not None
    assert subjects().count(REMOVED) == 1
    assert subjects().count(ENDED) == 1
    told = next(message for message in mail.outbox if message.subject == REMOVED)
    assert sorted(told.to) == sorted([world.owner.email, world.billing.email])
    assert customer.id in told.body
    assert AuditEvent.objects.filter(action="billing.customer_deleted").count() == 1
    # The next purchase makes a new customer (no card yet: to Checkout), never the deleted one.
    with time_machine.travel(T0 + timedelta(days=2), tick=False):
        started = buy_credits(world)
    assert started.checkout_url
    new_id = profile(world).gateway_customer_id
    assert new_id not in ("", customer.id)
    assert SandboxCustomer.objects.get(pk=new_id).deleted_at is None


def test_a_late_customer_deleted_leaves_the_new_customer_alone(world: World, step: Step) -> None:
    with time_machine.travel(T0, tick=False) as traveller:
        customer = with_seats(world, step)
        events = delete_in_the_dashboard(world)
        # Before the events come, a purchase finds the customer gone and makes a new one.
        started = step(lambda: buy_credits(world))
        assert started.checkout_url
        new_id = profile(world).gateway_customer_id
        assert new_id not in ("", customer.id)
        assert subjects().count(REMOVED) == 1  # told by the purchase that found it gone
        traveller.move_to(T0 + timedelta(days=1))
        step(lambda: deliver_badly(events))
    row = profile(world)
    assert (row.gateway_customer_id, row.former_gateway_customer_id) == (new_id, customer.id)
    assert subjects().count(REMOVED) == 1
    assert SeatSubscription.objects.get(organization=world.org).status == "canceled"
    assert subjects().count(ENDED) == 1


def test_pages_and_purchases_survive_a_customer_deleted_before_its_event(
    world: World, step: Step
) -> None:
    with time_machine.travel(T0, tick=False):
        customer = with_seats(world, step)
        delete_in_the_dashboard(world)  # its events never delivered here
        billing_manager = client_for(world.billing)
        for name in ("org_billing", "org_pay_now", "org_credits", "org_invoices"):
            assert billing_manager.get(reverse(name, args=[world.org.pk])).status_code == 200
        # Billing details are saved on a new customer rather than refused.
        response = billing_manager.post(
            reverse("org_billing", args=[world.org.pk]),
            {"company_name": "Acme Robotics Ltd", "billing_email": "", "country": "DE"},
        )
        assert response.status_code == 302
        new_id = profile(world).gateway_customer_id
        assert new_id not in ("", customer.id)
        assert SandboxCustomer.objects.get(pk=new_id).name == "Acme Robotics Ltd"
        # The card page opens on the new customer too.
        card_page = billing_manager.get(reverse("org_payment_method", args=[world.org.pk]))
        assert card_page.status_code == 302
        assert "/sandbox/" in card_page["Location"]


def test_the_command_says_what_it_did(world: World, step: Step) -> None:
    with time_machine.travel(T0, tick=False):
        customer = with_seats(world, step)
        out = StringIO()
        call_command("sandbox_customer_delete", org=str(world.org.pk), stdout=out)
    subscription = SandboxSubscription.objects.get(customer=customer)
    assert f"Customer {customer.id} of Acme Robotics deleted" in out.getvalue()
    assert subscription.id in out.getvalue()
    assert SandboxCustomer.objects.get(pk=customer.id).deleted_at == T0


def test_subscriptions_the_gateway_no_longer_has_end_here_once(
    world: World, step: Step, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should the gateway answer resource_missing for the deleted customer's subscription too,
    customer.deleted and customer.subscription.deleted still end the seats, once."""
    with time_machine.travel(T0, tick=False) as traveller:
        with_seats(world, step)
        events = delete_in_the_dashboard(world)

        def gone(self: SandboxGateway, *, subscription_id: str) -> Any:
            raise GatewayError(
                f"No such subscription: '{subscription_id}'", code=RESOURCE_MISSING, http_status=404
            )

        monkeypatch.setattr(SandboxGateway, "subscription_retrieve", gone)
        traveller.move_to(T0 + timedelta(days=1))
        step(lambda: deliver_badly(events))
    seats = SeatSubscription.objects.get(organization=world.org)
    assert (seats.status, seats.seats) == ("canceled", 0)
    assert subjects().count(ENDED) == 1
    assert AuditEvent.objects.filter(action="seats.end").count() == 1
