import re
import uuid

import pytest
import time_machine
from django.core import mail
from django.urls import reverse

from organizations.models import AuditEvent
from payments.sandbox import services as sandbox_services
from payments.sandbox.models import SandboxInvoice, SandboxPrice, SandboxSubscription
from seats.models import SeatChange, SeatReceipt, SeatSubscription
from tests.conftest import World, client_for, settle
from tests.payments.sandbox_helpers import FAILS_ON_CHARGE, GOOD
from tests.seats.conftest import PERIOD_END, START, save_card


def confirm(world: World, seats: int = 5, plan: str = "teams", key: str | None = None):  # type: ignore[no-untyped-def]
    return client_for(world.owner).post(
        reverse("org_seats_buy", args=[world.org.pk]),
        {"plan": plan, "seats": seats, "key": key or str(uuid.uuid4())},
    )


def test_the_confirmation_states_the_total_the_billing_date_and_the_card(world: World) -> None:
    save_card(world.org)
    with time_machine.travel(START, tick=False):
        response = client_for(world.billing).get(
            reverse("org_seats_buy", args=[world.org.pk]), {"plan": "teams", "seats": 5}
        )
    page = response.content.decode()
    assert response.status_code == 200
    assert "$90.00" in page  # 5 × $18.00, charged today and monthly
    assert "1st of every month" in page
    assert "1 Dec 2026" in page
    assert "•••• 4242" in page
    assert not SeatSubscription.objects.exists()  # a confirmation page charges nothing


def test_buying_with_the_saved_card_pays_the_first_invoice_at_once(
    world: World, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    save_card(world.org)
    mail.outbox.clear()
    with time_machine.travel(START, tick=False), django_capture_on_commit_callbacks(execute=True):
        response = confirm(world, seats=5)
    assert response.status_code == 302
    subscription = SeatSubscription.objects.get(organization=world.org)
    assert (subscription.quantity, subscription.status, subscription.seats) == (5, "active", 5)
    assert subscription.current_period_end == PERIOD_END
    assert subscription.unit_amount == 1800
    assert subscription.plan is not None
    assert subscription.plan.code == "teams"
    invoice = SandboxInvoice.objects.get(billing_reason="subscription_create")
    assert (invoice.status, invoice.amount_paid) == ("paid", 9000)
    change = SeatChange.objects.get(organization=world.org)
    assert (change.kind, change.status, change.amount) == ("purchase", "succeeded", 9000)
    receipt = SeatReceipt.objects.get(organization=world.org)
    assert (receipt.kind, receipt.amount, receipt.quantity) == ("purchase", 9000, 5)
    event = AuditEvent.objects.get(organization=world.org, action="seats.purchase")
    assert event.actor == world.owner
    assert event.details["amount"] == 9000
    seat_mails = [m for m in mail.outbox if "Seats bought" in m.subject]
    assert len(seat_mails) == 1
    assert sorted(seat_mails[0].to) == ["billing_manager@acme.test", "owner@acme.test"]
    assert "$90.00" in seat_mails[0].body
    # Later events change nothing: the receipt and email happen once.
    with django_capture_on_commit_callbacks(execute=True):
        settle()
    assert SeatReceipt.objects.count() == 1
    assert AuditEvent.objects.filter(action="seats.purchase").count() == 1
    assert len([m for m in mail.outbox if "Seats bought" in m.subject]) == 1


def test_a_double_submit_buys_once(world: World) -> None:
    save_card(world.org)
    key = str(uuid.uuid4())
    confirm(world, key=key)
    confirm(world, key=key)
    assert SandboxSubscription.objects.count() == 1
    assert SandboxInvoice.objects.filter(status="paid").count() == 1
    assert SeatChange.objects.count() == 1


def test_a_declined_first_payment_leaves_nothing(world: World) -> None:
    save_card(world.org, FAILS_ON_CHARGE)
    response = confirm(world)
    assert response.status_code == 400
    assert "Your card was declined. Nothing was bought or charged." in response.content.decode()
    assert not SeatSubscription.objects.exists()
    assert not SandboxSubscription.objects.exists()
    assert SeatChange.objects.get().status == "failed"
    assert AuditEvent.objects.filter(action="seats.purchase_failed").exists()


def test_it_refuses_fewer_seats_than_are_taken(world: World) -> None:
    save_card(world.org)
    # owner, admin and member hold a seat; the billing manager does not
    response = confirm(world, seats=2)
    assert response.status_code == 400
    assert "buy at least 3" in response.content.decode()
    assert not SandboxSubscription.objects.exists()
    assert confirm(world, seats=3).status_code == 302


def test_it_refuses_a_second_subscription(world: World) -> None:
    save_card(world.org)
    confirm(world)
    response = confirm(world)
    assert response.status_code == 400
    assert "add seats instead" in response.content.decode()
    assert SandboxSubscription.objects.count() == 1


def test_without_a_saved_card_the_buyer_pays_on_checkout(world: World) -> None:
    with time_machine.travel(START, tick=False):
        response = confirm(world, seats=4, plan="enterprise")
        assert response.status_code == 302
        session_id = re.search(r"/(cs_test_\w+)", response["Location"]).group(1)  # type: ignore[union-attr]
        # Nothing exists until the checkout is paid.
        assert not SeatSubscription.objects.exists()
        page = client_for(world.owner).get(reverse("org_seats", args=[world.org.pk]))
        assert "waiting for payment" in page.content.decode()
        assert sandbox_services.checkout_complete(session_id=session_id, card=GOOD).error is None
        settle()
    subscription = SeatSubscription.objects.get(organization=world.org)
    assert (subscription.quantity, subscription.status, subscription.unit_amount) == (
        4,
        "active",
        7200,
    )
    assert subscription.plan is not None
    assert subscription.plan.code == "enterprise"
    change = SeatChange.objects.get()
    assert (change.status, change.amount) == ("succeeded", 28800)
    assert AuditEvent.objects.get(action="seats.purchase").actor == world.owner


def test_coming_back_from_checkout_shows_the_seats_before_the_webhook(world: World) -> None:
    response = confirm(world, seats=3)
    session_id = re.search(r"/(cs_test_\w+)", response["Location"]).group(1)  # type: ignore[union-attr]
    assert sandbox_services.checkout_complete(session_id=session_id, card=GOOD).error is None
    # No settle(): the webhooks have not arrived; the return page syncs from the gateway.
    client = client_for(world.owner)
    back = client.get(reverse("org_seats", args=[world.org.pk]), {"session": session_id})
    # Said once, then the plain Seats tab: a reload does not repeat it.
    assert back.status_code == 302
    assert back["Location"] == reverse("org_seats", args=[world.org.pk])
    assert SeatSubscription.objects.get(organization=world.org).seats == 3
    page = client.get(back["Location"]).content.decode()
    assert "Payment received. You bought 3 seats: $54.00 charged today" in page
    assert "Next invoice" in page
    assert "Payment received" not in client.get(back["Location"]).content.decode()


def test_a_return_with_another_organizations_session_changes_nothing(world: World) -> None:
    response = client_for(world.outsider).post(
        reverse("org_seats_buy", args=[world.neighbour.pk]),
        {"plan": "teams", "seats": 1, "key": str(uuid.uuid4())},
    )
    session_id = re.search(r"/(cs_test_\w+)", response["Location"]).group(1)  # type: ignore[union-attr]
    assert sandbox_services.checkout_complete(session_id=session_id, card=GOOD).error is None
    client_for(world.owner).get(reverse("org_seats", args=[world.org.pk]), {"session": session_id})
    assert not SeatSubscription.objects.filter(organization=world.org).exists()
    assert not SeatSubscription.objects.filter(organization=world.neighbour).exists()


@pytest.mark.parametrize("plan", ["teams", "enterprise"])
def test_plans_become_gateway_prices_on_first_use(world: World, plan: str) -> None:

    save_card(world.org)
    confirm(world, plan=plan)
    price = SandboxPrice.objects.get()
    assert price.lookup_key == f"kilo-seats-{plan}-{1800 if plan == 'teams' else 7200}-usd-month"


@pytest.mark.parametrize("session", ["nope", "cs_test_\x00", "cs_test_" + "x" * 5000, "../../x"])
def test_a_return_with_a_malformed_session_changes_nothing(world: World, session: str) -> None:
    response = client_for(world.owner).get(
        reverse("org_seats", args=[world.org.pk]), {"session": session}
    )
    assert (response.status_code, response["Location"]) == (
        302,
        reverse("org_seats", args=[world.org.pk]),
    )
    assert not SeatSubscription.objects.filter(organization=world.org).exists()
