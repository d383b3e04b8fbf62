"""The sandbox where it used to differ from Stripe: unpaid subscriptions, invoices that cannot be
finalized, deleted customers and proration lines. Each test names the Stripe page it follows."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command

from payments.gateway import RESOURCE_MISSING, CustomerDetails, GatewayError
from payments.sandbox import engine
from payments.sandbox.gateway import SandboxGateway
from payments.sandbox.models import (
    SandboxCustomer,
    SandboxEvent,
    SandboxInvoice,
    SandboxPaymentMethod,
    SandboxSubscription,
)
from tests.factories import OrganizationFactory
from tests.payments.sandbox_helpers import FAILS_ON_CHARGE, GOOD, customer, seats

pytestmark = pytest.mark.django_db
gateway = SandboxGateway()
START = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)  # a 30-day period, then a 31-day one
RENEWAL = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
NEXT_RENEWAL = datetime(2027, 1, 1, 12, 0, tzinfo=UTC)


def events(kind: str) -> list[dict]:  # type: ignore[type-arg]
    return [
        event.payload["data"]["object"]
        for event in SandboxEvent.objects.filter(type=kind).order_by("delivery_order")
    ]


def unpaid_subscription() -> tuple[SandboxCustomer, SandboxSubscription, SandboxInvoice]:
    """A renewal declined on every retry: Stripe's "mark the subscription as unpaid"."""
    with time_machine.travel(START, tick=False):
        record = customer()
        subscription = seats(record, quantity=2)
        engine.payment_method_attach(customer=record, card=FAILS_ON_CHARGE)
    first = RENEWAL + timedelta(hours=1)
    for moment in (first, *(first + timedelta(days=d, minutes=1) for d in (1, 3, 5))):
        with time_machine.travel(moment, tick=False):
            engine.tick()
    row = SandboxSubscription.objects.get(pk=subscription.id)
    assert row.status == "unpaid"
    return record, row, SandboxInvoice.objects.get(billing_reason="subscription_cycle")


def test_an_unpaid_subscription_still_bills_each_cycle_as_a_draft_nobody_charges() -> None:
    """https://docs.stripe.com/billing/subscriptions/overview#unpaid: "the latest invoice remains
    open but payments aren't attempted. Invoices continue to be generated each billing cycle and
    remain in draft state." (The sandbox used to stop renewing it.)"""
    _, subscription, old = unpaid_subscription()
    with time_machine.travel(NEXT_RENEWAL + timedelta(days=2), tick=False):
        engine.tick()
    subscription.refresh_from_db()
    assert subscription.current_period_start == NEXT_RENEWAL
    draft = SandboxInvoice.objects.filter(billing_reason="subscription_cycle").exclude(pk=old.pk)
    assert [(i.status, i.auto_advance, i.attempt_count, i.amount_due) for i in draft] == [
        ("draft", False, 0, 3600)
    ]
    assert subscription.latest_invoice_id == draft.get().pk
    created = [i for i in events("invoice.created") if i["id"] == draft.get().pk]
    assert created[0]["auto_advance"] is False
    assert not [i for i in events("invoice.finalized") if i["id"] == draft.get().pk]
    old.refresh_from_db()
    assert (old.status, old.next_payment_attempt) == ("open", None)


def test_only_paying_the_most_recent_invoice_makes_it_active_again() -> None:
    """https://docs.stripe.com/billing/subscriptions/overview#unpaid: "Finalize and then pay the
    draft invoices (make sure to pay the most recent invoice before its due date to update the
    subscription's status to active)". (The sandbox used to reactivate on any invoice.)"""
    record, subscription, old = unpaid_subscription()
    with time_machine.travel(NEXT_RENEWAL + timedelta(minutes=5), tick=False):
        engine.tick()
        latest = SandboxInvoice.objects.get(status="draft")
        engine.payment_method_attach(customer=record, card=GOOD)
        assert gateway.invoice_pay(invoice_id=old.id, idempotency_key="old").paid
        subscription.refresh_from_db()
        assert subscription.status == "unpaid"
        finalized = gateway.invoice_finalize(invoice_id=latest.id)
        assert finalized.status == "open"
        assert finalized.number.startswith("KB-")
        assert gateway.invoice_pay(invoice_id=latest.id, idempotency_key="latest").paid
    subscription.refresh_from_db()
    assert subscription.status == "active"


def test_a_failed_payment_by_hand_leaves_an_unpaid_subscription_unpaid() -> None:
    _, subscription, old = unpaid_subscription()
    with time_machine.travel(RENEWAL + timedelta(days=8), tick=False), pytest.raises(GatewayError):
        gateway.invoice_pay(invoice_id=old.id, idempotency_key="again")
    subscription.refresh_from_db()
    assert subscription.status == "unpaid"


def test_a_renewal_the_tax_rules_reject_stays_a_draft_with_its_finalization_error() -> None:
    """https://docs.stripe.com/tax/invoicing: "Customers in the US require a 5-digit postal
    code"; https://docs.stripe.com/tax/customer-locations ("Invoice finalization errors"): Stripe
    sends invoice.finalization_failed with last_finalization_error.code
    customer_tax_location_invalid, and the draft stays unpaid while the subscription stays
    active (https://support.stripe.com/questions/manage-draft-subscription-invoices-with-invalid-tax-location-details)."""
    with time_machine.travel(START, tick=False):
        record = customer()
        subscription = seats(record, quantity=2)
    record.address = {"country": "US", "postal_code": "9410", "line1": "1 Main St"}
    record.save()
    with time_machine.travel(RENEWAL + timedelta(hours=2), tick=False):
        engine.tick()
    renewal = SandboxInvoice.objects.get(billing_reason="subscription_cycle")
    assert (renewal.status, renewal.attempt_count, renewal.number) == ("draft", 0, "")
    assert renewal.last_finalization_error_code == "customer_tax_location_invalid"
    (failed,) = events("invoice.finalization_failed")
    assert failed["status"] == "draft"
    assert failed["last_finalization_error"]["code"] == "customer_tax_location_invalid"
    assert "5-digit" in failed["last_finalization_error"]["message"]
    assert gateway.subscription_retrieve(subscription_id=subscription.id).status == "active"
    # Not retried by itself; finalizing by hand fails the same way until the address is fixed.
    with time_machine.travel(RENEWAL + timedelta(days=2), tick=False):
        engine.tick()
        with pytest.raises(GatewayError) as refused:
            gateway.invoice_finalize(invoice_id=renewal.id)
        assert refused.value.code == "customer_tax_location_invalid"
        assert len(events("invoice.finalization_failed")) == 2
        gateway.customer_update(
            customer_id=record.id,
            details=CustomerDetails(name="Acme", email="billing@acme.test"),
        )
        assert gateway.invoice_finalize(invoice_id=renewal.id).status == "open"


def test_deleting_a_customer_ends_its_subscriptions_and_every_later_call_is_resource_missing() -> (
    None
):
    """https://docs.stripe.com/api/customers/delete: "Also immediately cancels any active
    subscriptions on the customer"; "Deleting customers removes all credit card details and
    prevents any further operations". Errors: https://docs.stripe.com/error-codes
    (resource_missing)."""
    organization = OrganizationFactory()
    with time_machine.travel(START, tick=False):
        customer_id = gateway.customer_create(
            details=CustomerDetails(name="Acme", email="billing@acme.test"),
            metadata={"organization_id": str(organization.pk)},
            idempotency_key="customer-acme",
        )
        record = SandboxCustomer.objects.get(pk=customer_id)
        engine.payment_method_attach(customer=record, card=GOOD)
        subscription = seats(record, quantity=3)
    out = StringIO()
    call_command("sandbox_customer_delete", org=str(organization.pk), stdout=out)
    assert f"Customer {customer_id}" in out.getvalue()
    assert subscription.id in out.getvalue()
    assert SandboxSubscription.objects.get(pk=subscription.id).status == "canceled"
    assert [s["id"] for s in events("customer.subscription.deleted")] == [subscription.id]
    assert [c["id"] for c in events("customer.deleted")] == [customer_id]
    assert len(events("payment_method.detached")) == 1
    assert not SandboxPaymentMethod.objects.filter(customer_id=customer_id).exists()
    types = list(SandboxEvent.objects.order_by("delivery_order").values_list("type", flat=True))
    assert types.index("customer.subscription.deleted") < types.index("customer.deleted")
    for call in (
        lambda: gateway.payment_method_default(customer_id=customer_id),
        lambda: gateway.charge(
            customer_id=customer_id,
            amount=5000,
            currency="usd",
            description="Credits",
            metadata={},
            idempotency_key="after",
        ),
        lambda: gateway.customer_update(
            customer_id=customer_id, details=CustomerDetails(name="A", email="a@acme.test")
        ),
        lambda: gateway.payment_method_update_url(customer_id=customer_id, return_url="/"),
    ):
        with pytest.raises(GatewayError) as missing:
            call()
        assert (missing.value.code, missing.value.http_status) == (RESOURCE_MISSING, 404)
        assert missing.value.missing
        assert f"No such customer: '{customer_id}'" in str(missing.value)
    # Its subscription stays readable, as Stripe keeps the history.
    assert gateway.subscription_retrieve(subscription_id=subscription.id).status == "canceled"
    with pytest.raises(CommandError, match="has no customer"):
        call_command("sandbox_customer_delete", org=str(organization.pk), stdout=StringIO())


def test_a_quantity_change_is_written_as_stripe_writes_it_two_lines_that_sum_to_the_proration() -> (
    None
):
    """https://docs.stripe.com/billing/subscriptions/prorations: a credit for the unused time on
    the old quantity and a charge for the remaining time on the new one; the two add up to the
    pro-ration of the change, to the cent, as the preview says (SANDBOX.md, Pro-ration)."""
    with time_machine.travel(START, tick=False):
        record = customer()
        subscription = seats(record, quantity=5)
    # Day 10 of 30: 3 × $18 × 20/30 = $36.00; and an instant whose lines round apart.
    for at, added, expected in (
        (START + timedelta(days=10), 3, 3600),
        (START + timedelta(days=13, seconds=7), 1, 1020),
    ):
        before = SandboxSubscription.objects.get(pk=subscription.id).quantity
        with time_machine.travel(at, tick=False):
            preview = gateway.subscription_preview_quantity(
                subscription_id=subscription.id, quantity=before + added, proration_date=at
            )
            change = gateway.subscription_change_quantity(
                subscription_id=subscription.id,
                quantity=before + added,
                proration_date=at,
                idempotency_key=f"add-{added}",
            )
        assert change.invoice is not None
        credit, charge = change.invoice.lines
        assert (credit.quantity, charge.quantity) == (before, before + added)
        assert credit.amount < 0 < charge.amount
        assert credit.proration
        assert charge.proration
        assert credit.description.startswith(f"Unused time on {before} ×")
        assert charge.description.startswith(f"Remaining time on {before + added} ×")
        assert credit.amount + charge.amount == expected == change.invoice.amount_paid
        assert preview.amount_due == expected
        assert [line.amount for line in preview.lines] == [credit.amount, charge.amount]
