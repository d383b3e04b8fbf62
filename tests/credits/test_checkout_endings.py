"""A Checkout that fails later or expires ends its purchase (issue 21, defect 4): failed or
expired, the buyer is emailed and the purchase page says so, nothing is ever credited for it
afterwards whatever event arrives late, and the buyer may buy again.

Stripe: "Checkout Sessions expire 24 hours after creation"; `checkout.session.expired` "occurs
when a Checkout Session is expired" (https://docs.stripe.com/api/events/types). A delayed
notification payment method (ACH Direct Debit) completes the session with
`payment_status=unpaid`, then `checkout.session.async_payment_succeeded` or
`checkout.session.async_payment_failed` follows (https://docs.stripe.com/checkout/fulfillment
#delayed-notification); its test accounts 000123456789 (succeeds) and 000222222227 (fails,
insufficient funds) at routing number 110000000 (https://docs.stripe.com/testing#ach-direct-debit).
"""

import uuid
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.test import Client
from django.urls import reverse

from billing.selectors import saved_card
from credits.models import LedgerEntry, Purchase
from credits.services import account_for
from organizations.models import AuditEvent
from payments import dispatch
from payments.models import WebhookEvent
from payments.sandbox import engine
from tests.conftest import World, client_for, settle
from tests.credits.stripe_account import StripeAccount
from tests.credits.test_reversals_before_credit import (
    bought_through_stripe_checkout,
    deliver,
    held,
    types,
)
from tests.payments.sandbox_helpers import GOOD

pytestmark = pytest.mark.django_db

DOLLAR = 1_000_000
EXPIRED = "The payment page expired before it was paid."
CARD = {"number": GOOD.number, "expiry": "12 / 40", "cvc": "123"}


def bank(account_number: str) -> dict[str, str]:
    return {
        "method": "bank",
        "holder_name": "Acme Robotics Inc.",
        "routing_number": "110000000",
        "account_number": account_number,
        "mandate": "on",
    }


def to_checkout(world: World, amount_cents: int = 10_000, user: Any = None) -> str:
    response = client_for(user or world.billing).post(
        reverse("org_confirm", args=[world.org.pk]),
        {"amount_cents": amount_cents, "key": str(uuid.uuid4())},
    )
    assert "/sandbox/checkout/" in response["Location"]
    return str(response["Location"])


def purchase_page(world: World, purchase: Purchase) -> str:
    url = reverse("org_purchase", args=[world.org.pk, purchase.pk])
    return client_for(world.billing).get(url).content.decode()


def sent_with(subject_part: str) -> list[Any]:
    return [message for message in mail.outbox if subject_part in message.subject]


def test_an_expired_checkout_ends_its_purchase_and_the_buyer_may_buy_again(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    checkout_url = to_checkout(world)
    purchase = Purchase.objects.get()
    mail.outbox.clear()
    with time_machine.travel(engine.now() + timedelta(hours=24, minutes=1), tick=False):
        engine.tick()
        with django_capture_on_commit_callbacks(execute=True):
            settle()
        purchase.refresh_from_db()
        assert (purchase.status, purchase.failure_message) == ("expired", EXPIRED)
        assert not LedgerEntry.objects.exists()
        [email] = sent_with("was not completed")
        assert email.to == [world.billing.email]  # the buyer
        assert email.subject == "Your purchase of $100.00 of credits was not completed"
        assert "expired before it was paid. Nothing was charged" in email.body
        page = purchase_page(world, purchase)
        assert "The purchase was not completed" in page
        assert "Buy credits again" in page
        assert AuditEvent.objects.filter(action="credit_purchase.expired").count() == 1
        # The Checkout page says so and takes no payment.
        response = Client().post(checkout_url, CARD)
        assert response.status_code == 410
        assert "This checkout has expired" in response.content.decode()
        # Every event again, in reverse: nothing moves, nobody is emailed twice.
        with django_capture_on_commit_callbacks(execute=True):
            for event in WebhookEvent.objects.order_by("-pk"):
                dispatch.webhook_event_replay(event=event)
        purchase.refresh_from_db()
        assert purchase.status == "expired"
        assert len(sent_with("was not completed")) == 1
        # Buying again is a new purchase, at a new Checkout.
        again = to_checkout(world)
        assert again != checkout_url
        assert Client().post(again, CARD).status_code == 302
        settle()
    assert account_for(organization=world.org).balance == 100 * DOLLAR
    assert sorted(Purchase.objects.values_list("status", flat=True)) == ["expired", "paid"]


def test_back_from_an_expired_checkout_the_page_says_so_before_any_webhook(world: World) -> None:
    to_checkout(world)
    purchase = Purchase.objects.get()
    with time_machine.travel(engine.now() + timedelta(hours=25), tick=False):
        engine.tick()
        held()  # its events are late
        assert "The purchase was not completed" in purchase_page(world, purchase)
    purchase.refresh_from_db()
    assert purchase.status == "expired"


def test_a_bank_debit_that_settles_credits_when_the_bank_answers(world: World) -> None:
    checkout_url = to_checkout(world)
    response = Client().post(checkout_url, bank("000123456789"))
    purchase = Purchase.objects.get()
    assert response["Location"].endswith(f"/credits/purchases/{purchase.pk}/")
    completed = held()
    assert "checkout.session.completed" in types(completed)
    # Back from Checkout: the payment is on its way, no credits yet.
    assert "Your bank payment is on its way" in purchase_page(world, purchase)
    purchase.refresh_from_db()
    assert purchase.status == "processing"
    assert account_for(organization=world.org).balance == 0
    with time_machine.travel(engine.now() + timedelta(days=4, minutes=1), tick=False):
        engine.tick()
        succeeded = held()
        assert {"checkout.session.async_payment_succeeded", "invoice.paid"} <= types(succeeded)
        deliver(list(reversed(succeeded)) + succeeded)
    with time_machine.travel(engine.now() + timedelta(days=5), tick=False):
        deliver(completed)  # the completion, a day late: changes nothing
    purchase.refresh_from_db()
    assert purchase.status == "paid"
    assert purchase.invoice_number.startswith("KB-")
    assert account_for(organization=world.org).balance == 100 * DOLLAR
    assert LedgerEntry.objects.filter(kind="purchase").count() == 1
    # The bank account paid once; it is no card to charge off-session later.
    assert saved_card(organization=world.org, user=None) is None


def test_a_bank_debit_that_fails_ends_the_purchase_and_nothing_credits_it_later(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    checkout_url = to_checkout(world, 25_000)
    Client().post(checkout_url, bank("000222222227"))
    purchase = Purchase.objects.get()
    completed = held()
    mail.outbox.clear()
    with time_machine.travel(engine.now() + timedelta(days=4, minutes=1), tick=False):
        engine.tick()
        failed = held()
        assert "checkout.session.async_payment_failed" in types(failed)
        assert "invoice.paid" not in types(failed)
        with django_capture_on_commit_callbacks(execute=True):
            deliver(failed + failed)  # the failure first, twice
    purchase.refresh_from_db()
    assert (purchase.status, purchase.failure_message) == (
        "failed",
        "Your bank did not complete the payment.",
    )
    [email] = sent_with("failed")
    assert email.subject == "Your bank payment of $250.00 for credits failed"
    assert email.to == [world.billing.email]
    # The completion a day late, twice, and the buyer's page: the purchase stays failed.
    with time_machine.travel(engine.now() + timedelta(days=5), tick=False):
        deliver(list(reversed(completed)) + completed)
        page = purchase_page(world, purchase)
    assert "The payment failed" in page
    assert "Your bank did not complete the payment." in page
    purchase.refresh_from_db()
    assert purchase.status == "failed"
    assert account_for(organization=world.org).balance == 0
    assert not LedgerEntry.objects.exists()
    assert len(sent_with("failed")) == 1


def test_checkout_offers_the_bank_debit_with_stripes_test_accounts_only(world: World) -> None:
    checkout_url = to_checkout(world)
    page = Client().get(checkout_url).content.decode()
    assert "Pay by bank: US bank account (ACH Direct Debit)" in page
    assert "000123456789" in page
    refused = Client().post(checkout_url, bank("000999999999"))
    assert refused.status_code == 200
    assert "Stripe&#x27;s test bank accounts only" in refused.content.decode()
    unsigned = Client().post(checkout_url, {**bank("000123456789"), "mandate": ""})
    assert unsigned.status_code == 200
    assert Purchase.objects.get().status == "pending"


# Through Stripe: Stripe-shaped events, the real StripeGateway over a stateful fake.


def test_through_stripe_an_expired_checkout_ends_its_purchase(
    world: World, stripe_account: StripeAccount, django_capture_on_commit_callbacks: Any
) -> None:
    purchase = bought_through_stripe_checkout(world, 5_000)
    expired = stripe_account.checkout_expired(purchase.checkout_session_id)
    with django_capture_on_commit_callbacks(execute=True):
        deliver(expired + expired)
    purchase.refresh_from_db()
    assert (purchase.status, purchase.failure_message) == ("expired", EXPIRED)
    assert len(sent_with("was not completed")) == 1
    assert account_for(organization=world.org).balance == 0


def test_through_stripe_a_failed_bank_debit_ends_its_purchase_in_any_order(
    world: World, stripe_account: StripeAccount, django_capture_on_commit_callbacks: Any
) -> None:
    purchase = bought_through_stripe_checkout(world, 10_000)
    completed = stripe_account.checkout_by_bank_debit(purchase.checkout_session_id)
    failed = stripe_account.bank_debit_failed(purchase.checkout_session_id)
    with django_capture_on_commit_callbacks(execute=True):
        deliver(list(reversed(failed)) + failed)
    with time_machine.travel(engine.now() + timedelta(days=1), tick=False):
        deliver(completed + list(reversed(completed)))
        page = client_for(world.owner).get(
            reverse("org_purchase", args=[world.org.pk, purchase.pk])
        )
    purchase.refresh_from_db()
    assert purchase.status == "failed"
    assert "The payment failed" in page.content.decode()
    assert len(sent_with("failed")) == 1
    assert account_for(organization=world.org).balance == 0
    assert not LedgerEntry.objects.exists()


def test_through_stripe_a_bank_debit_on_its_way_is_processing(
    world: World, stripe_account: StripeAccount
) -> None:
    purchase = bought_through_stripe_checkout(world, 10_000)
    deliver(stripe_account.checkout_by_bank_debit(purchase.checkout_session_id))
    purchase.refresh_from_db()
    assert (purchase.status, purchase.payment_intent_id[:3]) == ("processing", "pi_")
    assert AuditEvent.objects.filter(action="credit_purchase.processing").count() == 1
