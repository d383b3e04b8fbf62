"""3-D Secure for credits (DESIGN.md, "Strong customer authentication"): a purchase with the saved
card sends the buyer to their bank and completes when they confirm; an off-session auto top-up
emails the payer the link and stays on. Also: declined purchase invoices are voided, the saved
card is the default one only, and one currency per payer.

The sandbox card 4000 0027 6000 3184 "requires authentication on all transactions"
(https://docs.stripe.com/testing#authentication-and-setup)."""

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing.services import billing_profile_for, gateway_customer_ensure
from credits import services
from credits.exceptions import PurchaseDeclined
from credits.models import CreditAccount, LedgerEntry, Purchase
from credits.services import account_for
from invoices.models import Invoice
from payments.sandbox import engine
from payments.sandbox.models import SandboxCustomer, SandboxInvoice
from seats.models import SeatPlan
from seats.services import seats_purchase
from tests.conftest import World, client_for, settle
from tests.credits.conftest import fund
from tests.credits.conftest import spend_exactly as debit
from tests.credits.test_purchases import confirm, save_card
from tests.payments.sandbox_helpers import AUTHENTICATION, FAILS_ON_CHARGE, GOOD

pytestmark = pytest.mark.django_db
DOLLAR = 1_000_000


def card_form(card: Any) -> dict[str, str]:
    return {"number": card.number, "expiry": "12 / 40", "cvc": card.cvc}


def test_buying_with_a_saved_card_that_needs_authentication(world: World) -> None:
    save_card(world, AUTHENTICATION)
    client = client_for(world.billing)
    response = client.post(
        reverse("org_confirm", args=[world.org.pk]),
        {"amount_cents": 10_000, "key": str(uuid.uuid4())},
    )
    bank = response["Location"]
    assert "/sandbox/authenticate/pi_" in bank
    purchase = Purchase.objects.get()
    assert (purchase.status, purchase.action_url) == ("pending", bank)
    assert account_for(organization=world.org).balance == 0
    # The purchase page says what is waiting and links to the bank's page.
    page = client.get(reverse("org_purchase", args=[world.org.pk, purchase.pk])).content.decode()
    assert "Confirm the payment with your bank" in page
    # The payer confirms; back on the purchase page, the credits are there before any webhook.
    back = Client().post(bank, {"outcome": "complete"})["Location"]
    assert back.endswith(f"/credits/purchases/{purchase.pk}/")
    page = client.get(back).content.decode()
    assert "Payment received" in page
    assert account_for(organization=world.org).balance == 100 * DOLLAR
    settle()
    assert LedgerEntry.objects.filter(kind="purchase").count() == 1
    assert Invoice.objects.get(gateway_id=purchase.gateway_invoice_id).status == "paid"


def test_failing_the_authentication_charges_nothing(world: World) -> None:
    save_card(world, AUTHENTICATION)
    response = confirm(world, 5_000)
    assert "Confirm your payment" in response.content.decode()  # followed to the bank's page
    purchase = Purchase.objects.get()
    Client().post(purchase.action_url, {"outcome": "fail"})
    settle()
    purchase.refresh_from_db()
    assert purchase.status == "pending"
    assert account_for(organization=world.org).balance == 0
    assert not LedgerEntry.objects.exists()


def test_a_new_user_buys_through_checkout_with_authentication_then_again_with_the_saved_card(
    world: World,
) -> None:
    user = world.member
    client = client_for(user)
    checkout = client.post(
        reverse("personal_confirm"), {"amount_cents": 2_000, "key": str(uuid.uuid4())}
    )["Location"]
    bank = Client().post(checkout, card_form(AUTHENTICATION))["Location"]
    assert "/sandbox/authenticate/" in bank
    back = Client().post(bank, {"outcome": "complete"})["Location"]
    assert re.search(r"/profile/credits/purchases/\d+/$", back)
    assert "Payment received" in client.get(back).content.decode()
    settle()
    assert account_for(user=user).balance == 20 * DOLLAR
    # The card is the default now: the next purchase goes to the bank's page at once.
    second = client.post(
        reverse("personal_confirm"), {"amount_cents": 5_000, "key": str(uuid.uuid4())}
    )["Location"]
    assert "/sandbox/authenticate/" in second
    Client().post(second, {"outcome": "complete"})
    settle()
    assert account_for(user=user).balance == 70 * DOLLAR
    assert LedgerEntry.objects.filter(kind="purchase").count() == 2


@pytest.fixture
def topping_up_with_authentication(world: World) -> CreditAccount:
    save_card(world, AUTHENTICATION)
    account = account_for(organization=world.org)
    fund(account, 12 * DOLLAR)
    CreditAccount.objects.filter(pk=account.pk).update(
        auto_topup_enabled=True, auto_topup_threshold=10 * DOLLAR, auto_topup_amount_cents=5_000
    )
    account.refresh_from_db()
    return account


def test_an_auto_top_up_that_needs_authentication_emails_the_link_and_stays_on(
    world: World,
    topping_up_with_authentication: CreditAccount,
    django_capture_on_commit_callbacks: Any,
) -> None:
    account = topping_up_with_authentication
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        debit(account, world.member, 3 * DOLLAR, "r1")
    account.refresh_from_db()
    assert account.auto_topup_enabled
    assert account.auto_topup_last_error == ""
    topup = Purchase.objects.get(kind="auto_topup")
    assert topup.awaiting_authentication
    asked = [m for m in mail.outbox if m.subject.startswith("Confirm the auto top-up")]
    assert len(asked) == 1
    assert sorted(asked[0].to) == sorted([world.owner.email, world.billing.email])
    assert topup.invoice_url in asked[0].body
    assert not any(m.subject.startswith("Auto top-up failed") for m in mail.outbox)
    # While it waits, no other top-up is tried, however low the balance goes.
    with django_capture_on_commit_callbacks(execute=True):
        debit(account, world.member, 1 * DOLLAR, "r2")
    assert services.auto_topup_sweep() == 0
    assert Purchase.objects.filter(kind="auto_topup").count() == 1
    # The payer confirms on the invoice's page: the top-up is credited.
    invoice_page = Client().get(topup.invoice_url).content.decode()
    bank = re.search(r'href="([^"]*/sandbox/authenticate/[^"]*)"', invoice_page)
    assert bank is not None
    Client().post(bank.group(1).replace("&amp;", "&"), {"outcome": "complete"})
    settle()
    account.refresh_from_db()
    assert account.balance == (8 + 50) * DOLLAR
    assert Purchase.objects.get(kind="auto_topup").status == "paid"


def test_an_auto_top_up_nobody_confirms_lapses_after_a_day(
    world: World, topping_up_with_authentication: CreditAccount
) -> None:
    account = topping_up_with_authentication
    debit(account, world.member, 3 * DOLLAR, "r1")  # claims the top-up (its task not run here)
    assert services.auto_topup_run(account_id=account.pk) == "awaiting_authentication"
    topup = Purchase.objects.get(kind="auto_topup")
    with time_machine.travel(timezone.now() + timedelta(days=1, minutes=1)):
        services.auto_topup_sweep()
    topup.refresh_from_db()
    assert topup.status == "failed"
    assert SandboxInvoice.objects.get(pk=topup.gateway_invoice_id).status == "void"
    account.refresh_from_db()
    assert account.auto_topup_enabled  # still on: a new top-up asks again


def test_a_declined_purchase_invoice_is_voided(world: World) -> None:
    save_card(world, FAILS_ON_CHARGE)
    confirm(world, 10_000)
    purchase = Purchase.objects.get()
    assert purchase.status == "failed"
    assert SandboxInvoice.objects.get(pk=purchase.gateway_invoice_id).status == "void"
    settle()
    assert Invoice.objects.get(gateway_id=purchase.gateway_invoice_id).status == "void"


def test_an_attached_card_that_is_not_the_default_sends_the_buyer_to_checkout(
    world: World,
) -> None:
    # Stripe charges the default card only (https://docs.stripe.com/billing/revenue-recovery/
    # smart-retries): a merely attached card is not "the saved card".
    profile = billing_profile_for(organization=world.org)
    record = SandboxCustomer.objects.get(pk=gateway_customer_ensure(profile))
    engine.payment_method_attach(customer=record, card=GOOD, make_default=False)
    response = client_for(world.owner).post(
        reverse("org_confirm", args=[world.org.pk]),
        {"amount_cents": 5_000, "key": str(uuid.uuid4())},
    )
    assert "/sandbox/checkout/" in response["Location"]


def test_one_currency_per_payer(world: World) -> None:
    save_card(world)
    confirm(world, 5_000)
    assert billing_profile_for(organization=world.org).currency == "usd"
    euro = SeatPlan.objects.create(
        code="teams-eur", name="Teams (EUR)", unit_amount=1700, currency="eur"
    )
    with pytest.raises(Exception, match="pays in USD; it cannot also be charged in EUR"):
        seats_purchase(
            actor=world.owner,
            organization=world.org,
            plan=euro,
            seats=3,
            idempotency_key="eur",
            success_url="http://testserver/",
            cancel_url="http://testserver/",
        )
    profile = billing_profile_for(organization=world.neighbour)
    profile.currency = "eur"
    profile.save()
    with pytest.raises(PurchaseDeclined, match="pays in EUR"):
        services.credits_purchase(
            actor=world.outsider,
            account=account_for(organization=world.neighbour),
            amount_cents=5_000,
            idempotency_key="eur-credits",
            success_url="http://testserver/",
            cancel_url="http://testserver/",
        )
