"""The inverse of the proof (issue 21): for each kind of finding, the books or the gateway are
damaged in exactly that way, and the reconciler reports exactly that finding, heals it where it
should, and a second run changes nothing."""

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from billing.models import BillingProfile
from credits import webhooks as credit_webhooks
from credits.models import CreditAccount, LedgerEntry, Purchase
from credits.services import account_for, purchase_mark_paid
from invoices.models import Invoice
from organizations.models import Organization
from payments.factory import get_gateway
from payments.sandbox.models import SandboxCustomer, SandboxInvoice
from reconciliation.models import Finding
from seats.models import SeatSubscription
from tests.conftest import World, client_for, settle
from tests.credits.conftest import seat_everyone
from tests.credits.test_purchases import confirm, save_card
from tests.payments.sandbox_helpers import GOOD
from tests.reconciliation.conftest import (
    books,
    drop_events,
    found,
    reconcile_json,
    without_ledger_trigger,
)

pytestmark = pytest.mark.django_db

DOLLAR = 1_000_000


def bought(world: World, dollars: int = 100) -> Purchase:
    """Credits bought with the saved card, every event delivered."""
    confirm(world, dollars * 100)
    settle()
    purchase = Purchase.objects.filter(account__organization=world.org).order_by("-pk").first()
    assert purchase is not None
    assert purchase.status == Purchase.Status.PAID
    return purchase


def balance(world: World) -> int:
    return account_for(organization=world.org).balance


def healthy(world: World) -> Purchase:
    """Seats and credits bought through the product: books that agree."""
    seat_everyone(world.org, world.owner, seats=5)
    save_card(world)
    purchase = bought(world)
    settle()
    assert reconcile_json()["findings"] == []
    return purchase


def run_twice(kind: str, state: str, **options: Any) -> dict[str, Any]:
    """The run that finds it (exactly one finding, of this kind and state), then a second that
    changes nothing."""
    first = reconcile_json(**options)
    assert found(first) == [(kind, state)], first
    before = books()
    second = reconcile_json(**options)
    if state == Finding.State.HEALED:
        assert second["findings"] == []
    else:
        assert found(second) == [(kind, state)]
    assert books() == before
    return first["findings"][0]


def test_paid_on_the_gateway_but_lost_here_is_credited(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The buyer pays at Checkout and never comes back, and the handlers that credit lose
    both events (checkout.session.completed, invoice.paid): the gateway has the money."""
    healthy(world)
    client = client_for(world.billing)
    save = SandboxCustomer.objects.get(pk=world.org.billing_profile.gateway_customer_id)
    save.default_payment_method = None  # no saved card: Checkout
    save.save(update_fields=["default_payment_method"])
    response = client.post(
        reverse("org_confirm", args=[world.org.pk]),
        {"amount_cents": 25_000, "key": str(uuid.uuid4())},
    )
    client_for(None).post(
        response["Location"], {"number": GOOD.number, "expiry": "12 / 40", "cvc": "123"}
    )
    monkeypatch.setattr(credit_webhooks, "purchase_mark_paid", lambda **_: False)
    settle()
    monkeypatch.undo()
    purchase = Purchase.objects.order_by("-pk").first()
    assert purchase is not None
    assert purchase.status == Purchase.Status.PENDING
    assert balance(world) == 100 * DOLLAR

    finding = run_twice(Finding.Kind.PAID_NOT_CREDITED, Finding.State.HEALED)

    assert finding["local"] == f"purchase {purchase.pk}"
    assert (
        finding["gateway_id"]
        == SandboxInvoice.objects.get(metadata__purchase_id=str(purchase.pk)).id
    )
    assert finding["payer"] == str(world.org.pk)
    assert balance(world) == 350 * DOLLAR
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.PAID
    assert (
        LedgerEntry.objects.filter(source="purchase", idempotency_key=str(purchase.pk)).count() == 1
    )
    stored = Finding.objects.get()
    assert (stored.state, stored.ending) == ("healed", "healed")


def test_credited_here_without_a_gateway_payment_stays_open_for_staff(
    world: World, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A purchase credited while its Checkout was never paid (a bug behind the product's
    back): the credits stay, the finding stays open, and ADMINS hear of it once."""
    settings.ADMINS = [("Staff", "staff@kilo.test")]
    healthy(world)
    save = SandboxCustomer.objects.get(pk=world.org.billing_profile.gateway_customer_id)
    save.default_payment_method = None
    save.save(update_fields=["default_payment_method"])
    client_for(world.billing).post(
        reverse("org_confirm", args=[world.org.pk]),
        {"amount_cents": 5_000, "key": str(uuid.uuid4())},
    )
    purchase = Purchase.objects.order_by("-pk").first()
    assert purchase is not None
    assert purchase.checkout_session_id
    with django_capture_on_commit_callbacks(execute=True):
        purchase_mark_paid(purchase_id=purchase.pk)
    assert balance(world) == 150 * DOLLAR
    mail.outbox.clear()

    finding = run_twice(Finding.Kind.CREDITED_WITHOUT_PAYMENT, Finding.State.OPEN)

    assert finding["gateway_id"] == purchase.checkout_session_id
    assert finding["local"] == f"purchase {purchase.pk}"
    assert balance(world) == 150 * DOLLAR  # nothing taken back: staff decide
    told = [m for m in mail.outbox if "Reconciliation" in m.subject]
    assert len(told) == 1
    assert told[0].to == ["staff@kilo.test"]
    assert f"purchase {purchase.pk}" in told[0].body


def test_a_refund_whose_events_were_lost_takes_its_credits_back(world: World) -> None:
    purchase = healthy(world)
    call_command("sandbox_refund", invoice=purchase.invoice_number, amount_usd="30")
    assert drop_events() >= 2

    finding = run_twice(Finding.Kind.REFUND_NOT_APPLIED, Finding.State.HEALED)

    assert finding["gateway_id"].startswith("re_")
    assert balance(world) == 70 * DOLLAR
    entry = LedgerEntry.objects.get(source="refund")
    assert (entry.amount, entry.idempotency_key) == (-30 * DOLLAR, finding["gateway_id"])
    assert Invoice.objects.get(gateway_id=purchase.gateway_invoice_id).amount_refunded == 3000
    assert purchase.reversals.get().status == "succeeded"


def test_a_dispute_whose_events_were_lost_takes_its_credits_back(world: World) -> None:
    purchase = healthy(world)
    call_command("sandbox_dispute", invoice=purchase.invoice_number)
    drop_events()

    finding = run_twice(Finding.Kind.DISPUTE_NOT_APPLIED, Finding.State.HEALED)

    assert finding["gateway_id"].startswith("du_")
    assert balance(world) == 0
    entry = LedgerEntry.objects.get(source="dispute")
    assert (entry.amount, entry.idempotency_key) == (-100 * DOLLAR, finding["gateway_id"])
    copy = Invoice.objects.get(gateway_id=purchase.gateway_invoice_id)
    assert (copy.dispute_status, copy.dispute_amount) == ("needs_response", 10_000)


def test_a_dispute_won_while_its_event_was_lost_gives_the_credits_back(world: World) -> None:
    purchase = healthy(world)
    call_command("sandbox_dispute", invoice=purchase.invoice_number)
    settle()
    assert balance(world) == 0
    call_command("sandbox_dispute", invoice=purchase.invoice_number, close="won")
    drop_events()

    run_twice(Finding.Kind.DISPUTE_NOT_APPLIED, Finding.State.HEALED)

    assert balance(world) == 100 * DOLLAR
    assert Invoice.objects.get(gateway_id=purchase.gateway_invoice_id).dispute_status == "won"


def test_an_invoice_the_product_never_heard_of_is_copied(world: World) -> None:
    """A one-off charge made in the gateway's dashboard, its events dropped."""
    healthy(world)
    charge = get_gateway().charge(
        customer_id=world.org.billing_profile.gateway_customer_id,
        amount=1234,
        currency="usd",
        description="Set-up fee, charged in the dashboard",
        metadata={},
        idempotency_key="dashboard-charge-1",
    )
    drop_events()
    assert not Invoice.objects.filter(gateway_id=charge.invoice.id).exists()

    finding = run_twice(Finding.Kind.INVOICE_MISSING, Finding.State.HEALED)

    assert finding["gateway_id"] == charge.invoice.id
    copy = Invoice.objects.get(gateway_id=charge.invoice.id)
    assert (copy.status, copy.amount_paid, copy.kind) == ("paid", 1234, "other")


def test_an_invoice_status_changed_behind_the_products_back_is_healed(world: World) -> None:
    purchase = healthy(world)
    Invoice.objects.filter(gateway_id=purchase.gateway_invoice_id).update(
        status="open", amount_paid=0, amount_remaining=10_000
    )

    finding = run_twice(Finding.Kind.INVOICE_DIFFERS, Finding.State.HEALED)

    copy = Invoice.objects.get(gateway_id=purchase.gateway_invoice_id)
    assert finding["local"] == f"invoice {copy.number}"
    assert (copy.status, copy.amount_paid, copy.amount_remaining) == ("paid", 10_000, 0)


def test_an_invoice_copy_ahead_of_the_gateway_is_left_for_staff(world: World) -> None:
    """Paid here, open at the gateway: moving it back would make it owed on our word alone;
    invoice_sync never moves an invoice back, so the finding stays open."""
    healthy(world)
    seats = SandboxInvoice.objects.get(billing_reason="subscription_create")
    SandboxInvoice.objects.filter(pk=seats.pk).update(status="open", amount_paid=0)

    finding = run_twice(Finding.Kind.INVOICE_DIFFERS, Finding.State.OPEN)

    assert finding["gateway_id"] == seats.id
    assert Invoice.objects.get(gateway_id=seats.id).status == "paid"
    stored = Finding.objects.get()
    assert stored.gateway_says["status"] == "open"
    assert stored.local_says["status"] == "paid"
    assert "ahead" in stored.heal_error


def test_fewer_seats_here_than_billed_are_given(world: World) -> None:
    healthy(world)
    SeatSubscription.objects.filter(organization=world.org).update(quantity=3)

    finding = run_twice(Finding.Kind.SUBSCRIPTION_DIFFERS, Finding.State.HEALED)

    row = SeatSubscription.objects.get(organization=world.org)
    assert finding["gateway_id"] == row.gateway_subscription_id
    assert row.quantity == 5


def test_more_seats_here_than_billed_stay_for_staff(world: World) -> None:
    healthy(world)
    SeatSubscription.objects.filter(organization=world.org).update(quantity=9)

    run_twice(Finding.Kind.SUBSCRIPTION_DIFFERS, Finding.State.OPEN)

    assert SeatSubscription.objects.get(organization=world.org).quantity == 9
    stored = Finding.objects.get()
    assert (stored.gateway_says["quantity"], stored.local_says["quantity"]) == (5, 9)


def test_a_subscription_status_changed_here_is_healed_when_it_takes_no_seats(
    world: World,
) -> None:
    healthy(world)
    SeatSubscription.objects.filter(organization=world.org).update(status="past_due")

    run_twice(Finding.Kind.SUBSCRIPTION_DIFFERS, Finding.State.HEALED)

    assert SeatSubscription.objects.get(organization=world.org).status == "active"


def test_a_gateway_customer_gone_is_forgotten_as_customer_deleted_would(world: World) -> None:
    healthy(world)
    customer_id = world.org.billing_profile.gateway_customer_id
    SandboxCustomer.objects.filter(pk=customer_id).delete()

    finding = run_twice(Finding.Kind.CUSTOMER_GONE, Finding.State.HEALED)

    assert finding["gateway_id"] == customer_id
    profile = BillingProfile.objects.get(organization=world.org)
    assert (profile.gateway_customer_id, profile.former_gateway_customer_id) == ("", customer_id)


def test_a_balance_that_is_not_its_ledger_is_reported(world: World) -> None:
    healthy(world)
    account = account_for(organization=world.org)
    CreditAccount.objects.filter(pk=account.pk).update(balance=account.balance + 7)

    finding = run_twice(Finding.Kind.BALANCE_DIFFERS, Finding.State.OPEN)

    assert finding["local"] == f"credit account {account.pk}"
    stored = Finding.objects.get()
    assert stored.gateway_says == {"ledger_sum": 100 * DOLLAR}
    assert stored.local_says == {"balance": 100 * DOLLAR + 7}


def test_a_deleted_ledger_credit_is_reported_twice_over(world: World) -> None:
    """The ledger row of a purchase deleted by raw SQL (its trigger paused): the balance no
    longer sums, and the gateway's payment is no longer credited; the purchase says paid, so
    only staff can credit it again."""
    purchase = healthy(world)
    without_ledger_trigger(
        "DELETE FROM credits_ledgerentry WHERE source = 'purchase' AND idempotency_key = %s",
        [str(purchase.pk)],
    )

    report = reconcile_json()

    assert found(report) == [
        (Finding.Kind.BALANCE_DIFFERS, "open"),
        (Finding.Kind.PAID_NOT_CREDITED, "open"),
    ]
    assert balance(world) == 100 * DOLLAR


def test_held_that_is_not_its_active_holds_is_reported(world: World) -> None:
    healthy(world)
    account = account_for(organization=world.org)
    CreditAccount.objects.filter(pk=account.pk).update(held=5)

    run_twice(Finding.Kind.HELD_DIFFERS, Finding.State.OPEN)


def test_an_organization_held_in_grace_for_nothing_is_reported(world: World) -> None:
    healthy(world)
    Organization.objects.filter(pk=world.org.pk).update(
        billing_state="grace", grace_ends_at=timezone.now() + timedelta(days=3)
    )

    run_twice(Finding.Kind.LIFECYCLE_DIFFERS, Finding.State.OPEN)


def test_a_difference_applied_meanwhile_is_cleared(world: World) -> None:
    """A refund whose event only arrives after the reconciler saw it: the next run sees it no
    more and ends the finding, healed by the late event."""
    healthy(world)
    account = account_for(organization=world.org)
    CreditAccount.objects.filter(pk=account.pk).update(balance=account.balance + 7)
    reconcile_json()
    CreditAccount.objects.filter(pk=account.pk).update(balance=account.balance)

    assert reconcile_json()["findings"] == []

    stored = Finding.objects.get()
    assert (stored.state, stored.ending) == ("healed", "cleared")
