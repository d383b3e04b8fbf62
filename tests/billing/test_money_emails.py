"""Every email about an organization's money reaches its billing email (DESIGN.md: "Emails
about money go to the owners, the billing managers and the organization's billing email"):
seat receipts, credit receipts, auto top-up failures, low-balance alerts, the lifecycle. Amounts
in them read in cents."""

from typing import Any

import pytest
from django.core import mail

from billing.services import billing_profile_for
from credits import services
from credits.models import CreditAccount
from credits.services import account_for, credits_purchase
from dunning import lifecycle
from tests.conftest import World
from tests.credits.conftest import fund, seat_everyone, spend_exactly
from tests.credits.test_purchases import save_card
from tests.payments.sandbox_helpers import FAILS_ON_CHARGE

pytestmark = pytest.mark.django_db

BILLING_EMAIL = "ap@acme.test"
DOLLAR = 1_000_000


@pytest.fixture
def billed(world: World) -> World:
    profile = billing_profile_for(organization=world.org)
    profile.billing_email = BILLING_EMAIL
    profile.save(update_fields=["billing_email"])
    return world


def debit(account: CreditAccount, world: World, cost: int, request_id: str) -> None:
    spend_exactly(account, world.member, cost, request_id)


def sent(subject_start: str) -> list[Any]:
    return [m for m in mail.outbox if m.subject.startswith(subject_start)]


def test_seat_and_credit_receipts_reach_the_billing_email(
    billed: World, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        seat_everyone(billed.org, billed.owner)
        fund(account_for(organization=billed.org), 294_159, key="odd-microdollars")
        credits_purchase(
            actor=billed.owner,
            account=account_for(organization=billed.org),
            amount_cents=25_000,
            idempotency_key="receipt-1",
            success_url="http://testserver/",
            cancel_url="http://testserver/",
        )
    (seats,) = sent("Seats bought for Acme Robotics")
    (receipt,) = sent("Receipt: $250.00 of Kilo credits")
    for message in (seats, receipt):
        assert BILLING_EMAIL in message.to
        assert billed.owner.email in message.to
    assert "New balance: $250.29" in receipt.body  # cents, not $250.294159


def test_a_failed_auto_top_up_reaches_the_billing_email(
    billed: World, django_capture_on_commit_callbacks: Any
) -> None:
    save_card(billed, FAILS_ON_CHARGE)
    account = account_for(organization=billed.org)
    fund(account, 12 * DOLLAR + 123)
    CreditAccount.objects.filter(pk=account.pk).update(
        auto_topup_enabled=True, auto_topup_threshold=10 * DOLLAR
    )
    with django_capture_on_commit_callbacks(execute=True):
        debit(account, billed, 3 * DOLLAR, "r1")
    (failed,) = sent("Auto top-up failed and is now off")
    assert sorted(failed.to) == sorted([billed.owner.email, billed.billing.email, BILLING_EMAIL])
    assert "The balance is $9.00." in failed.body


@pytest.mark.parametrize(
    ("chosen", "expected"),
    [
        ("", ["billing_manager@acme.test", "owner@acme.test", BILLING_EMAIL]),
        ("cfo@acme.test", ["cfo@acme.test", BILLING_EMAIL]),
    ],
)
def test_the_low_balance_alert_reaches_the_billing_email(
    billed: World, django_capture_on_commit_callbacks: Any, chosen: str, expected: list[str]
) -> None:
    account = account_for(organization=billed.org)
    fund(account, 12 * DOLLAR)
    account.refresh_from_db()
    services.low_balance_configure(
        actor=billed.owner,
        account=account,
        threshold=10 * DOLLAR,
        recipients=[chosen] if chosen else [],
    )
    with django_capture_on_commit_callbacks(execute=True):
        debit(account, billed, 3 * DOLLAR - 4_000, "r1")
    (alert,) = sent("Your Kilo Billing credit balance is low")
    assert sorted(alert.to) == sorted(expected)
    assert "fell to $9.00, under the alert threshold of $10.00" in alert.body


def test_a_personal_low_balance_alert_goes_to_the_person(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    account = account_for(user=world.member)
    fund(account, 12 * DOLLAR)
    account.refresh_from_db()
    services.low_balance_configure(
        actor=world.member, account=account, threshold=10 * DOLLAR, recipients=[]
    )
    with django_capture_on_commit_callbacks(execute=True):
        debit(account, world, 3 * DOLLAR, "r1")
    (alert,) = sent("Your Kilo Billing credit balance is low")
    assert alert.to == [world.member.email]


def test_lifecycle_emails_reach_the_billing_email(
    billed: World, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.organization_suspend(organization=billed.org, reason="grace ended")
        lifecycle.organization_restore(organization=billed.org, reason="paid")
    for subject in ("Acme Robotics is suspended", "Acme Robotics is active again"):
        (message,) = sent(subject)
        assert BILLING_EMAIL in message.to
