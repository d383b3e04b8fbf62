"""The local copy of every gateway invoice: kinds, fields, and events that come twice or late."""

import json
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.core import mail
from django.test import Client
from django.urls import reverse

from billing.services import billing_profile_for
from dunning.models import LifecycleTransition
from invoices.models import Invoice
from invoices.services import invoice_kind, invoice_sync
from organizations.models import Organization
from payments import dispatch
from payments.gateway import CardError, parse_invoice
from payments.models import WebhookEvent
from payments.sandbox import engine, objects
from payments.sandbox.models import SandboxEvent, SandboxInvoice
from payments.signing import signature_header
from tests.conftest import World, settle
from tests.factories import UserFactory
from tests.invoices.conftest import T0, Step, card_use, customer_of, gateway, subjects, subscribe
from tests.payments.sandbox_helpers import FAILS_ON_CHARGE, GOOD

pytestmark = pytest.mark.django_db


def sandbox_invoice_record(**changes: Any) -> Any:
    """A gateway Invoice record as parse_invoice makes it, with some fields changed."""
    base = {
        "id": "in_test",
        "customer": "cus_test",
        "status": "open",
        "billing_reason": "manual",
        "created": 1_800_000_000,
        "metadata": {},
    }
    return parse_invoice({**base, **changes})


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        ({"billing_reason": "subscription_create", "subscription": "sub_1"}, "seat_subscription"),
        ({"billing_reason": "subscription_cycle", "subscription": "sub_1"}, "seat_subscription"),
        ({"billing_reason": "subscription_update", "subscription": "sub_1"}, "seat_proration"),
        # Subscription invoices carry the subscription's metadata: the reason decides.
        (
            {"billing_reason": "subscription_update", "metadata": {"kind": "credit_purchase"}},
            "seat_proration",
        ),
        ({"metadata": {"kind": "credit_purchase", "purchase_id": "7"}}, "credit_purchase"),
        ({"metadata": {"kind": "auto_topup", "purchase_id": "8"}}, "auto_topup"),
        ({"metadata": {"kind": "something_else"}}, "other"),
        ({}, "other"),
    ],
)
def test_it_names_the_kind_of_every_invoice(fields: dict[str, Any], kind: str) -> None:
    assert invoice_kind(sandbox_invoice_record(**fields)) == kind


def test_it_copies_every_field_of_a_paid_subscription_invoice(world: World, step: Step) -> None:
    with time_machine.travel(T0, tick=False):
        customer = customer_of(world.org)
        step(lambda: subscribe(customer, world.org, quantity=3))
    invoice = Invoice.objects.get()
    source = SandboxInvoice.objects.get()
    assert invoice.billing_profile == billing_profile_for(organization=world.org)
    assert (invoice.gateway_id, invoice.number) == (source.id, source.number)
    assert invoice.number.startswith("KB-")
    assert (invoice.kind, invoice.status, invoice.currency) == ("seat_subscription", "paid", "usd")
    assert (invoice.amount_due, invoice.amount_paid, invoice.amount_remaining) == (5400, 5400, 0)
    assert invoice.attempt_count == 1
    assert invoice.paid_at == T0
    assert invoice.period_start == T0
    assert invoice.period_end == T0.replace(month=4)
    assert invoice.hosted_invoice_url.endswith(reverse("sandbox_invoice", args=[source.id]))
    assert invoice.invoice_pdf.endswith(reverse("sandbox_invoice_pdf", args=[source.id]))
    assert invoice.gateway_subscription_id == source.subscription_id
    assert [(line["quantity"], line["amount"], line["proration"]) for line in invoice.lines] == [
        (3, 5400, False)
    ]


def test_other_code_can_sync_an_invoice_right_after_a_charge(world: World) -> None:
    customer = customer_of(world.org)
    charge = gateway.charge(
        customer_id=customer.id,
        amount=5000,
        currency="usd",
        description="$50.00 of credits",
        metadata={"kind": "credit_purchase", "purchase_id": "1", "organization_id": "x"},
        idempotency_key="purchase-1",
    )
    invoice = invoice_sync(invoice=charge.invoice)
    assert invoice is not None
    assert (invoice.kind, invoice.status, invoice.amount_paid) == ("credit_purchase", "paid", 5000)
    settle()  # the events of the same charge change nothing
    assert Invoice.objects.get() == invoice
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid) == ("paid", 5000)


def test_it_ignores_invoices_of_unknown_customers(db: None) -> None:
    assert invoice_sync(invoice=sandbox_invoice_record(customer="cus_nobody")) is None
    assert not Invoice.objects.exists()


def test_a_personal_invoice_is_kept_without_touching_any_organization(world: World) -> None:
    user = UserFactory()
    profile = billing_profile_for(user=user)
    profile.gateway_customer_id = "cus_personal"
    profile.save()
    record = sandbox_invoice_record(
        customer="cus_personal", billing_reason="subscription_cycle", attempt_count=3
    )
    invoice = invoice_sync(invoice=record)
    assert invoice is not None
    assert invoice.billing_profile == profile
    assert not LifecycleTransition.objects.exists()


# Events twice and out of order


def post_event(payload: dict[str, Any]) -> int:
    body = json.dumps(payload).encode()
    response = Client().post(
        reverse("stripe_webhook"),
        data=body,
        content_type="application/json",
        headers={"Stripe-Signature": signature_header(body, secret=settings.STRIPE_WEBHOOK_SECRET)},
    )
    return response.status_code


def process_pending() -> None:
    for event in WebhookEvent.objects.filter(status="pending").order_by("pk"):
        dispatch.webhook_event_process(webhook_event_id=event.pk)


SEQUENCE = ["invoice.created", "invoice.finalized", "invoice.payment_failed", "invoice.paid"]


def invoice_events(invoice_id: str) -> list[dict[str, Any]]:
    """The sandbox's invoice.* events for one invoice in the order it sent them (events of one
    frozen instant share their `created`); taken out of its outbox so that the test decides the
    order of delivery."""
    payloads = [
        event.payload
        for event in SandboxEvent.objects.filter(type__in=SEQUENCE)
        if event.payload["data"]["object"]["id"] == invoice_id
    ]
    SandboxEvent.objects.update(delivered_at=T0, next_attempt_at=None)
    return sorted(
        payloads,
        key=lambda p: (
            p["created"],
            p["data"]["object"]["attempt_count"],
            SEQUENCE.index(p["type"]),
        ),
    )


@pytest.fixture
def failing_renewal(world: World, step: Step) -> list[dict[str, Any]]:
    """A renewal that fails twice, then is paid on the third try: its events, undelivered."""
    with time_machine.travel(T0, tick=False) as traveller:
        customer = customer_of(world.org)
        step(lambda: subscribe(customer, world.org))
        card_use(customer, FAILS_ON_CHARGE)
        traveller.move_to(T0.replace(month=4) + timedelta(seconds=1))
        engine.tick()
        traveller.move_to(T0.replace(month=4) + timedelta(hours=1, seconds=1))
        engine.tick()
        traveller.move_to(T0.replace(month=4) + timedelta(days=1, hours=1, seconds=1))
        engine.tick()
        card_use(customer, GOOD)
        renewal = SandboxInvoice.objects.get(billing_reason="subscription_cycle")
        gateway.invoice_pay(invoice_id=renewal.id, idempotency_key="pay-renewal")
    events = invoice_events(renewal.id)
    assert [(e["type"], e["data"]["object"]["attempt_count"]) for e in events] == [
        ("invoice.created", 0),
        ("invoice.finalized", 0),
        ("invoice.payment_failed", 1),
        ("invoice.payment_failed", 2),
        ("invoice.paid", 3),
    ]
    mail.outbox.clear()
    return events


def test_events_in_reverse_order_end_in_the_newest_state(
    world: World, failing_renewal: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        for payload in reversed(failing_renewal):
            assert post_event(payload) == 200
        process_pending()
    invoice = Invoice.objects.get(billing_reason="subscription_cycle")
    assert (invoice.status, invoice.attempt_count, invoice.amount_remaining) == ("paid", 3, 0)
    assert invoice.number.startswith("KB-")
    # The late failures were older than the payment: no grace, no failure emails.
    world.org.refresh_from_db()
    assert world.org.billing_state == "active"
    assert not LifecycleTransition.objects.exists()
    assert mail.outbox == []


def test_every_event_twice_counts_each_failure_once(
    world: World, failing_renewal: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        for payload in failing_renewal:
            assert post_event(payload) == 200
            assert post_event(payload) == 200
            process_pending()
    assert WebhookEvent.objects.filter(deliveries=2).count() == len(failing_renewal)
    number = Invoice.objects.get(billing_reason="subscription_cycle").number
    assert subjects().count(f"Payment failed for Acme Robotics: invoice {number}") == 2
    assert list(
        LifecycleTransition.objects.order_by("pk").values_list("from_state", "to_state")
    ) == [("active", "grace"), ("grace", "active")]
    assert subjects()[-1] == "Acme Robotics is active again"


def test_a_late_first_failure_after_the_second_changes_nothing(
    world: World, failing_renewal: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    created, finalized, first, second, paid = failing_renewal
    with django_capture_on_commit_callbacks(execute=True):
        for payload in (second, created, first, finalized):
            post_event(payload)
        process_pending()
    world.org.refresh_from_db()
    assert world.org.billing_state == "grace"
    assert Invoice.objects.get(billing_reason="subscription_cycle").attempt_count == 2
    assert len(mail.outbox) == 1
    with django_capture_on_commit_callbacks(execute=True):
        post_event(paid)
        process_pending()
    world.org.refresh_from_db()
    assert world.org.billing_state == "active"


def test_a_replayed_event_changes_nothing(world: World, step: Step) -> None:
    with time_machine.travel(T0, tick=False):
        customer = customer_of(world.org)
        step(lambda: subscribe(customer, world.org))
    invoice = Invoice.objects.get()
    before = (invoice.status, invoice.attempt_count, invoice.observed_at)
    for event in WebhookEvent.objects.filter(type__startswith="invoice."):
        dispatch.webhook_event_replay(event=event)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.attempt_count, invoice.observed_at) == before


# Which failures start the lifecycle


def test_a_failed_credit_purchase_never_starts_the_lifecycle(
    world: World, step: Step, settings: Any
) -> None:
    customer = customer_of(world.org, card=FAILS_ON_CHARGE)
    charge = step(
        lambda: gateway.charge(
            customer_id=customer.id,
            amount=10000,
            currency="usd",
            description="$100.00 of credits",
            metadata={"kind": "credit_purchase", "purchase_id": "3"},
            idempotency_key="purchase-3",
        )
    )
    for attempt in range(3):
        with pytest.raises(CardError):
            step(
                lambda attempt=attempt: gateway.invoice_pay(
                    invoice_id=charge.invoice.id, idempotency_key=f"again-{attempt}"
                )
            )
    invoice = Invoice.objects.get()
    assert (invoice.kind, invoice.status, invoice.attempt_count) == ("credit_purchase", "open", 4)
    world.org.refresh_from_db()
    assert world.org.billing_state == "active"
    assert mail.outbox == []


def test_a_failed_auto_topup_never_starts_the_lifecycle(world: World, step: Step) -> None:
    customer = customer_of(world.org, card=FAILS_ON_CHARGE)
    step(
        lambda: gateway.charge(
            customer_id=customer.id,
            amount=5000,
            currency="usd",
            description="Auto top-up",
            metadata={"kind": "auto_topup", "purchase_id": "4"},
            idempotency_key="topup-4",
        )
    )
    assert Invoice.objects.get().kind == "auto_topup"
    assert mail.outbox == []


def test_a_failed_seat_addition_emails_the_billing_contacts(world: World, step: Step) -> None:
    customer = customer_of(world.org)
    subscription = step(lambda: subscribe(customer, world.org))
    card_use(customer, FAILS_ON_CHARGE)
    mail.outbox.clear()
    with pytest.raises(CardError):
        step(
            lambda: gateway.subscription_change_quantity(
                subscription_id=subscription.id,
                quantity=8,
                proration_date=None,
                idempotency_key="add-3",
            )
        )
    proration = Invoice.objects.get(kind="seat_proration")
    assert (proration.status, proration.attempt_count) == ("open", 1)
    assert len(mail.outbox) == 1
    assert sorted(mail.outbox[0].to) == [world.billing.email, world.owner.email]
    assert proration.number in mail.outbox[0].subject
    assert "Failed attempts so far: 1" in mail.outbox[0].body
    world.org.refresh_from_db()
    assert world.org.billing_state == "active"  # one failure is not "repeatedly"


def test_the_threshold_comes_from_settings(world: World, step: Step, settings: Any) -> None:
    settings.BILLING_FAILED_ATTEMPTS_BEFORE_GRACE = 1
    with time_machine.travel(T0, tick=False) as traveller:
        customer = customer_of(world.org)
        step(lambda: subscribe(customer, world.org))
        card_use(customer, FAILS_ON_CHARGE)
        traveller.move_to(T0.replace(month=4) + timedelta(seconds=1))
        step(engine.tick)
        traveller.move_to(T0.replace(month=4) + timedelta(hours=1, seconds=1))
        step(engine.tick)
    world.org.refresh_from_db()
    assert world.org.billing_state == Organization.BillingState.GRACE


def test_objects_module_shape_is_what_the_sync_reads(world: World) -> None:
    """The sandbox's invoice JSON parses into every field the copy stores (no silent blanks)."""
    customer = customer_of(world.org)
    charge = gateway.charge(
        customer_id=customer.id,
        amount=2500,
        currency="usd",
        description="credits",
        metadata={"kind": "credit_purchase"},
        idempotency_key="shape",
    )
    parsed = parse_invoice(objects.invoice_json(SandboxInvoice.objects.get(pk=charge.invoice.id)))
    assert parsed.number
    assert parsed.hosted_invoice_url
    assert parsed.invoice_pdf
    assert parsed.paid_at
