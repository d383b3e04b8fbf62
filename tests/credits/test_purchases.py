import re
import uuid

import pytest
from django.core import mail
from django.urls import reverse

from billing.services import billing_profile_for, gateway_customer_ensure
from credits.models import CreditAccount, LedgerEntry, Purchase
from credits.services import account_for
from organizations.models import AuditEvent
from payments import dispatch
from payments.models import WebhookEvent
from payments.sandbox import engine
from payments.sandbox.models import SandboxCustomer, SandboxEvent
from tests.conftest import World, client_for, settle
from tests.payments.sandbox_helpers import FAILS_ON_CHARGE, GOOD


def save_card(world: World, card=GOOD) -> None:  # type: ignore[no-untyped-def]
    customer_id = gateway_customer_ensure(billing_profile_for(organization=world.org))
    engine.payment_method_attach(customer=SandboxCustomer.objects.get(pk=customer_id), card=card)


def confirm(world: World, amount_cents: int, key: uuid.UUID | None = None, user=None):  # type: ignore[no-untyped-def]
    return client_for(user or world.owner).post(
        reverse("org_confirm", args=[world.org.pk]),
        {"amount_cents": amount_cents, "key": str(key or uuid.uuid4())},
        follow=True,
    )


@pytest.mark.parametrize("role", ["owner", "admin", "billing"])
def test_buying_with_the_saved_card_credits_in_the_same_request(
    world: World,
    role: str,
    django_capture_on_commit_callbacks,  # type: ignore[no-untyped-def]
) -> None:
    save_card(world)
    with django_capture_on_commit_callbacks(execute=True):
        response = confirm(world, 10_000, user=getattr(world, role))
    page = response.content.decode()
    assert "Payment received" in page
    assert 'New balance: <strong id="balance">$100.00</strong>' in page
    account = account_for(organization=world.org)
    assert account.balance == 100_000_000
    purchase = Purchase.objects.get()
    assert (purchase.status, purchase.gateway_invoice_id != "") == ("paid", True)
    assert (
        AuditEvent.objects.filter(organization=world.org, action="credit_purchase.paid").count()
        == 1
    )
    receipts = [m for m in mail.outbox if m.subject.startswith("Receipt")]
    assert len(receipts) == 1
    assert sorted(receipts[0].to) == sorted([world.owner.email, world.billing.email])


def test_the_webhook_delivered_twice_credits_nothing_more(world: World) -> None:
    save_card(world)
    confirm(world, 5_000)
    settle()
    paid = WebhookEvent.objects.get(type="invoice.paid")
    assert paid.status == "processed"

    dispatch.webhook_event_replay(event=paid)
    account = account_for(organization=world.org)
    assert account.balance == 50_000_000
    assert LedgerEntry.objects.filter(account=account, kind="purchase").count() == 1


def test_a_double_submit_charges_once(world: World) -> None:
    save_card(world)
    key = uuid.uuid4()
    confirm(world, 25_000, key)
    confirm(world, 25_000, key)
    assert Purchase.objects.count() == 1
    assert account_for(organization=world.org).balance == 250_000_000


def test_a_decline_shows_the_reason_and_changes_nothing(world: World) -> None:
    save_card(world, FAILS_ON_CHARGE)
    response = confirm(world, 10_000)
    assert response.status_code == 402
    assert "Your card was declined." in response.content.decode()
    assert account_for(organization=world.org).balance == 0
    assert not LedgerEntry.objects.exists()
    assert Purchase.objects.get().status == "failed"
    settle()  # the failure events change nothing either
    assert account_for(organization=world.org).balance == 0


def test_without_a_card_the_buyer_goes_to_checkout_and_back(world: World) -> None:
    client = client_for(world.billing)
    response = client.post(
        reverse("org_confirm", args=[world.org.pk]),
        {"amount_cents": 50_000, "key": str(uuid.uuid4())},
    )
    checkout_url = response["Location"]
    assert "/sandbox/checkout/" in checkout_url
    paid = client_for(None).post(
        checkout_url, {"number": GOOD.number, "expiry": "12 / 40", "cvc": "123"}
    )
    back = paid["Location"]
    assert re.search(r"/credits/purchases/\d+/$", back)
    # Back from Checkout, before any webhook: the page already shows the credits.
    page = client.get(back).content.decode()
    assert "$500.00" in page
    assert "Payment received" in page
    # ... and its invoice by number, with its links, not by the gateway's id.
    purchase = Purchase.objects.get()
    assert re.match(r"KB-\d+$", purchase.invoice_number)
    assert f"Invoice {purchase.invoice_number}: <a href=" in page
    assert f"Invoice {purchase.gateway_invoice_id}" not in page
    settle()  # then both webhooks arrive: nothing more is credited
    account = account_for(organization=world.org)
    assert account.balance == 500_000_000
    assert LedgerEntry.objects.filter(kind="purchase").count() == 1
    # The card is saved: the next purchase is charged at once.
    assert (
        "Visa •••• 4242" in client.get(reverse("org_credits", args=[world.org.pk])).content.decode()
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"custom": "999"}, "starts at $1,000"),
        ({"custom": "10000.01"}, "most you can buy at once is $10,000"),
        ({"custom": "lots"}, "as a number of dollars"),
        ({"custom": "-50"}, "more than $0"),
        ({"custom": "1500.005"}, "at most two decimals"),
        ({}, "Choose an amount"),
        ({"preset": "75"}, "Select a valid choice"),
    ],
)
def test_bad_amounts_are_refused_before_anything_is_charged(
    world: World, data: dict[str, str], message: str
) -> None:
    response = client_for(world.owner).post(reverse("org_buy", args=[world.org.pk]), data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Purchase.objects.exists()
    assert not SandboxEvent.objects.exists()


def test_a_tampered_confirmation_amount_is_refused(world: World) -> None:
    save_card(world)
    confirm(world, 12_345)  # not a preset and under the custom minimum
    assert not Purchase.objects.exists()


def test_the_confirmation_page_states_amount_card_and_no_fee(world: World) -> None:
    save_card(world)
    page = (
        client_for(world.owner)
        .post(reverse("org_buy", args=[world.org.pk]), {"custom": "1500"})
        .content.decode()
    )
    assert "$1,500.00" in page
    assert "Visa •••• 4242" in page
    assert "None: credits are spent at the providers' list price" in page
    assert not Purchase.objects.exists()


def test_personal_credits_have_their_own_presets(world: World) -> None:
    client = client_for(world.member)
    page = client.get(reverse("personal_credits")).content.decode()
    assert "$20" in page
    assert "$1,000" not in page
    response = client.post(reverse("personal_buy"), {"custom": "9.99"})
    assert "starts at $10" in response.content.decode()
    response = client.post(
        reverse("personal_confirm"), {"amount_cents": 2_000, "key": str(uuid.uuid4())}
    )
    assert "/sandbox/checkout/" in response["Location"]
    assert Purchase.objects.get().account == CreditAccount.objects.get(user=world.member)
