"""Absurd money anywhere a person types it: a clear message, nothing moved, never a 500. Staff
grants are confirmed and capped; auto top-up can never charge the card on every request."""

import re
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core import mail
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from credits.exceptions import AutoTopupRefused
from credits.models import CreditAccount, LedgerEntry, Purchase
from credits.money import MoneyError, parse_dollars
from credits.services import account_for, auto_topup_configure
from tests.conftest import World, client_for
from tests.credits.conftest import fund, seat_everyone, spend_exactly
from tests.credits.test_purchases import save_card
from tests.factories import UserFactory

DOLLAR = 1_000_000
ABSURD = [
    "1e26",
    "1e309",
    "9999999999999999.99",
    "NaN",
    "inf",
    "-Infinity",
    "0x10",
    "1_000",
    "١٢٣",  # Arabic-Indic digits: int() would take them
    "12\x0034",
    "1" * 10_000,
    "10000000000000000000000",
    "1.234",
    "1,25",
    "$",
    " ",
]


@pytest.mark.parametrize("raw", ABSURD)
def test_the_one_money_parser_refuses_absurd_input(raw: str) -> None:
    with pytest.raises(MoneyError):
        parse_dollars(raw, max_dollars=10_000)


@pytest.mark.parametrize(
    ("raw", "cents"),
    [("1500", 150_000), ("1,500.5", 150_050), ("$0.05", 5), (" 10.00 ", 1_000), ("-0", None)],
)
def test_it_reads_what_people_type(raw: str, cents: int | None) -> None:
    if cents is None:
        with pytest.raises(MoneyError):
            parse_dollars(raw, max_dollars=10_000, signed=True)
    else:
        assert parse_dollars(raw, max_dollars=10_000) == cents


FORMS = [
    ("org_buy", "custom", {}),
    ("org_auto_topup", "threshold", {"amount": "100", "enabled": ""}),
    ("org_auto_topup", "amount", {"threshold": "10", "enabled": ""}),
    ("org_low_balance", "threshold", {"recipients": ""}),
    ("org_daily_limit", "limit", {}),
]


@pytest.mark.parametrize(("name", "field", "rest"), FORMS)
@pytest.mark.parametrize("raw", ["1e26", "1e309", "9999999999999999.99", "NaN", "1" * 5_000])
def test_every_money_form_answers_absurd_amounts_with_a_form_error(
    world: World, name: str, field: str, rest: dict[str, str], raw: str
) -> None:
    account = account_for(organization=world.org)
    before = CreditAccount.objects.filter(pk=account.pk).values().get()
    response = client_for(world.owner).post(
        reverse(name, args=[world.org.pk]), {field: raw, **rest}
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert 'class="errorlist' in page
    assert CreditAccount.objects.filter(pk=account.pk).values().get() == before
    assert not Purchase.objects.exists()


def test_the_grant_command_refuses_absurd_amounts(world: World) -> None:
    for raw in ("1e309", "1000000000000", "12.345", "lots"):
        with pytest.raises(CommandError, match="--usd"):
            call_command("grant_credits", org=str(world.org.pk), usd=raw, reason="x")
    with pytest.raises(CommandError, match="second confirmation"):
        call_command("grant_credits", org=str(world.org.pk), usd="150000", reason="x")
    assert not LedgerEntry.objects.exists()
    call_command(
        "grant_credits", org=str(world.org.pk), usd="150000", reason="x", confirm_large=True
    )
    assert account_for(organization=world.org).balance == 150_000 * DOLLAR


# Staff grants in the admin


def review(admin_client, account: CreditAccount, amount: str, reason: str = "goodwill"):  # type: ignore[no-untyped-def]
    url = reverse("admin:credits_creditaccount_grant", args=[account.pk])
    return url, admin_client.post(url, {"amount": amount, "reason": reason})


def test_a_huge_grant_is_refused_with_a_plain_message(world: World, admin_client) -> None:  # type: ignore[no-untyped-def]
    account = account_for(organization=world.org)
    for amount in ("1000000000000", "1e309", "-99999999999"):
        _, page = review(admin_client, account, amount)
        text = page.content.decode()
        assert "at most $10,000,000" in text or "as a number of dollars" in text
        assert "Error" not in text
    assert not LedgerEntry.objects.exists()


def test_a_grant_over_100k_needs_a_second_confirmation(world: World, admin_client) -> None:  # type: ignore[no-untyped-def]
    account = account_for(organization=world.org)
    url, page = review(admin_client, account, "150,000")
    key = page.context["form"].initial["key"]
    answer = {"amount": "150,000", "reason": "goodwill", "key": key, "confirmed": "True"}
    refused = admin_client.post(url, answer)
    assert "needs a second confirmation" in refused.content.decode()
    assert not LedgerEntry.objects.exists()
    assert admin_client.post(url, {**answer, "large_confirmed": "on"}).status_code == 302
    account.refresh_from_db()
    assert account.balance == 150_000 * DOLLAR


def test_an_adjustment_below_zero_says_why_without_an_exception_name(
    world: World, admin_client
) -> None:  # type: ignore[no-untyped-def]
    account = account_for(organization=world.org)
    fund(account, 5 * DOLLAR)
    url, page = review(admin_client, account, "-7.50")
    assert "the balance goes from $5.00 to <strong>-$2.50</strong>" in page.content.decode()
    key = page.context["form"].initial["key"]
    answer = {"amount": "-7.50", "reason": "fix", "key": key, "confirmed": "True"}
    text = admin_client.post(url, answer).content.decode()
    assert "The balance is $5.00: an adjustment cannot take it below zero." in text
    assert "InsufficientBalance" not in text
    account.refresh_from_db()
    assert account.balance == 5 * DOLLAR


def test_the_grant_pages_are_linked_from_the_account_and_the_organization(
    world: World, admin_client
) -> None:  # type: ignore[no-untyped-def]
    organization_page = admin_client.get(
        reverse("admin:organizations_organization_change", args=[world.org.pk])
    ).content.decode()
    link = reverse("admin:credits_creditaccount_grant_organization", args=[world.org.pk])
    assert link in organization_page
    account = account_for(organization=world.org)
    assert admin_client.get(link)["Location"] == reverse(
        "admin:credits_creditaccount_grant", args=[account.pk]
    )


# Auto top-up rules


@pytest.mark.parametrize(
    ("threshold", "amount_cents", "message"),
    [
        (1_000_000 * DOLLAR, 1_000, "at most $10,000"),
        (10**24, 5_000, "at most $10,000"),
        (50 * DOLLAR, 5_000, "more than the threshold"),
        (60 * DOLLAR, 5_000, "more than the threshold"),
        (10 * DOLLAR, 500, "between $10 and $10,000"),
    ],
)
def test_auto_top_up_must_lift_the_balance_above_its_threshold(
    world: World, threshold: int, amount_cents: int, message: str
) -> None:
    save_card(world)
    account = account_for(organization=world.org)
    with pytest.raises(AutoTopupRefused, match=re.escape(message)):
        auto_topup_configure(
            actor=world.owner,
            account=account,
            enabled=True,
            threshold=threshold,
            amount_cents=amount_cents,
        )
    account.refresh_from_db()
    assert not account.auto_topup_enabled


def test_the_form_refuses_a_threshold_at_or_above_the_amount(world: World) -> None:
    save_card(world)
    response = client_for(world.owner).post(
        reverse("org_auto_topup", args=[world.org.pk]),
        {"enabled": "on", "threshold": "1000000", "amount": "10"},
    )
    assert response.status_code == 400
    assert "at most $10,000" in response.content.decode()
    response = client_for(world.owner).post(
        reverse("org_auto_topup", args=[world.org.pk]),
        {"enabled": "on", "threshold": "100", "amount": "100"},
    )
    assert "more than the threshold" in response.content.decode()
    assert not account_for(organization=world.org).auto_topup_enabled


def test_a_fourth_automatic_charge_in_24_hours_turns_auto_top_up_off(
    world: World, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    seat_everyone(world.org, world.owner)
    save_card(world)
    account = account_for(organization=world.org)
    fund(account, 20 * DOLLAR)
    auto_topup_configure(
        actor=world.owner, account=account, enabled=True, threshold=10 * DOLLAR, amount_cents=5_000
    )
    account.refresh_from_db()
    for n in range(3):
        Purchase.objects.create(
            account=account,
            kind=Purchase.Kind.AUTO_TOPUP,
            amount_cents=5_000,
            status=Purchase.Status.PAID,
            idempotency_key=f"earlier-{n}",
            created_at=timezone.now() - timedelta(hours=20 - n),
        )
    with django_capture_on_commit_callbacks(execute=True):
        spend_exactly(account, world.member, 11 * DOLLAR, "under-the-threshold")
    account.refresh_from_db()
    assert not account.auto_topup_enabled
    assert "3 times in the last 24 hours" in account.auto_topup_last_error
    assert Purchase.objects.filter(kind=Purchase.Kind.AUTO_TOPUP).count() == 3  # no fourth
    assert account.balance == 9 * DOLLAR
    assert any("Auto top-up" in message.subject for message in mail.outbox)


def test_staff_without_the_money_permission_cannot_grant_or_refund(world: World) -> None:
    """Access to the admin is not enough: a staff member who may only look (or nothing at all)
    moved $500 with a grant before; grants, adjustments and refunds need the permission to
    change credit accounts."""
    account = account_for(organization=world.org)
    onlooker = UserFactory(is_staff=True)
    onlooker.user_permissions.add(Permission.objects.get(codename="view_creditaccount"))
    client = Client()
    client.force_login(onlooker)
    grant = reverse("admin:credits_creditaccount_grant", args=[account.pk])
    from_organization = reverse(
        "admin:credits_creditaccount_grant_organization", args=[world.org.pk]
    )
    for url in (grant, from_organization, reverse("admin:credits_purchase_refund", args=[1])):
        refused = client.get(url, follow=True)
        assert refused.redirect_chain[0][0] == reverse("admin:index")
        assert "need the permission to change credit accounts" in refused.content.decode()
    confirmed = {"amount": "500", "reason": "x", "key": str(uuid.uuid4()), "confirmed": "True"}
    assert client.post(grant, confirmed).status_code == 302
    assert not LedgerEntry.objects.exists()
    assert account_for(organization=world.org).balance == 0
    # With the permission, the same staff member may.
    onlooker.user_permissions.add(Permission.objects.get(codename="change_creditaccount"))
    client.force_login(onlooker)
    assert client.get(grant).status_code == 200
