import pytest
from django.core import mail
from django.core.management import call_command
from django.urls import reverse

from credits import services
from credits.models import CreditAccount, LedgerEntry, Purchase
from credits.services import account_for
from organizations.models import AuditEvent
from tests.conftest import World, client_for
from tests.credits.conftest import fund, seat_everyone
from tests.credits.conftest import spend_exactly as debit
from tests.credits.test_purchases import save_card
from tests.payments.sandbox_helpers import FAILS_ON_CHARGE

DOLLAR = 1_000_000


@pytest.fixture
def topping(world: World, django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    save_card(world)
    account = account_for(organization=world.org)
    fund(account, 12 * DOLLAR)
    services.auto_topup_configure(
        actor=world.owner, account=account, enabled=True, threshold=10 * DOLLAR, amount_cents=5_000
    )
    return account


def test_crossing_the_threshold_tops_up_once(
    world: World, topping: CreditAccount, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        debit(topping, world.member, 1 * DOLLAR, "r1")  # 11: still above
    assert not Purchase.objects.filter(kind="auto_topup").exists()
    with django_capture_on_commit_callbacks(execute=True):
        debit(topping, world.member, 2 * DOLLAR, "r2")  # 9: under → one top-up of $50
    topping.refresh_from_db()
    assert topping.balance == 59 * DOLLAR
    assert topping.auto_topup_started_at is None
    topup = Purchase.objects.get(kind="auto_topup")
    assert (topup.status, topup.amount_cents) == ("paid", 5_000)
    assert topup.gateway_invoice_id


def test_a_top_up_in_flight_is_never_doubled(
    world: World, topping: CreditAccount, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    # The queued task has not run yet (captured but not executed): further debits claim nothing.
    with django_capture_on_commit_callbacks(execute=False) as queued:
        debit(topping, world.member, 3 * DOLLAR, "r1")
        debit(topping, world.member, 1 * DOLLAR, "r2")
    assert len(queued) == 1
    for callback in queued:
        callback()
    assert Purchase.objects.filter(kind="auto_topup").count() == 1
    assert services.auto_topup_sweep() == 0  # balance is back above the threshold


def test_a_failed_top_up_turns_itself_off_and_says_why(
    world: World, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    save_card(world, FAILS_ON_CHARGE)
    account = account_for(organization=world.org)
    fund(account, 12 * DOLLAR)
    CreditAccount.objects.filter(pk=account.pk).update(
        auto_topup_enabled=True, auto_topup_threshold=10 * DOLLAR
    )
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        debit(account, world.member, 3 * DOLLAR, "r1")
    account.refresh_from_db()
    assert not account.auto_topup_enabled
    assert account.auto_topup_last_error == "Your card was declined."
    assert account.balance == 9 * DOLLAR
    failed = [m for m in mail.outbox if m.subject == "Auto top-up failed and is now off"]
    assert len(failed) == 1
    assert sorted(failed[0].to) == sorted([world.owner.email, world.billing.email])
    assert AuditEvent.objects.filter(action="auto_topup.disabled").count() == 1


def test_enabling_auto_top_up_needs_a_saved_card(world: World) -> None:
    response = client_for(world.owner).post(
        reverse("org_auto_topup", args=[world.org.pk]),
        {"enabled": "on", "threshold": "10", "amount": "50"},
    )
    assert response.status_code == 400
    assert "Save a card first" in response.content.decode()
    assert not account_for(organization=world.org).auto_topup_enabled


def test_the_low_balance_alert_fires_once_and_rearms(
    world: World, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    account = account_for(organization=world.org)
    fund(account, 12 * DOLLAR)
    client_for(world.owner).post(
        reverse("org_low_balance", args=[world.org.pk]),
        {"threshold": "10", "recipients": "cfo@acme.test"},
    )
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        debit(account, world.member, 3 * DOLLAR, "r1")
        debit(account, world.member, 1 * DOLLAR, "r2")
    alerts = [m for m in mail.outbox if "low" in m.subject]
    assert len(alerts) == 1
    assert alerts[0].to == ["cfo@acme.test"]
    fund(account, 5 * DOLLAR, key="back-above")
    with django_capture_on_commit_callbacks(execute=True):
        debit(account, world.member, 5 * DOLLAR, "r3")
    assert len([m for m in mail.outbox if "low" in m.subject]) == 2


def test_staff_grant_from_the_command_line(world: World, capsys) -> None:  # type: ignore[no-untyped-def]
    call_command("grant_credits", org=str(world.org.pk), usd="25", reason="onboarding credit")
    account = account_for(organization=world.org)
    assert account.balance == 25 * DOLLAR
    entry = LedgerEntry.objects.get(account=account)
    assert (entry.kind, entry.reason) == ("grant", "onboarding credit")
    call_command("grant_credits", org=str(world.org.pk), usd="-5.50", reason="correction")
    account.refresh_from_db()
    assert account.balance == 19_500_000
    assert LedgerEntry.objects.filter(kind="adjustment").count() == 1


def test_staff_grant_in_the_admin_records_who_and_why(
    world: World, admin_client, admin_user
) -> None:  # type: ignore[no-untyped-def]
    account = account_for(organization=world.org)
    url = reverse("admin:credits_creditaccount_grant", args=[account.pk])
    review = admin_client.post(url, {"amount": "10", "reason": "goodwill"})
    assert "Apply $10.00" in review.content.decode()
    assert not LedgerEntry.objects.filter(account=account).exists()
    key = review.context["form"].initial["key"]
    answer = {"amount": "10", "reason": "goodwill", "key": key, "confirmed": "True"}
    assert admin_client.post(url, answer).status_code == 302
    assert admin_client.post(url, answer).status_code == 302  # a double submit grants once
    entry = LedgerEntry.objects.get(account=account)
    assert (entry.actor, entry.reason, entry.amount) == (admin_user, "goodwill", 10 * DOLLAR)


def test_credits_pages_follow_the_matrix(world: World) -> None:
    url = reverse("org_credits", args=[world.org.pk])
    for user in (world.owner, world.admin, world.billing):
        assert client_for(user).get(url).status_code == 200
    assert client_for(world.member).get(url).status_code == 403
    assert client_for(world.outsider).get(url).status_code == 404
    assert client_for(None).get(url).status_code == 302
    for name in ("org_buy", "org_confirm", "org_auto_topup", "org_low_balance"):
        target = reverse(name, args=[world.org.pk])
        assert client_for(world.member).post(target, {}).status_code == 403
        assert client_for(world.outsider).post(target, {}).status_code == 404
    limit = reverse("org_daily_limit", args=[world.org.pk])
    assert client_for(world.billing).post(limit, {"limit": "5"}).status_code == 403
    assert client_for(world.admin).post(limit, {"limit": "5"}).status_code == 302
    assert account_for(organization=world.org).member_daily_limit == 5 * DOLLAR


def test_a_purchase_of_another_organization_is_not_found(world: World) -> None:
    seat_everyone(world.neighbour, world.outsider, seats=1)
    theirs = Purchase.objects.create(
        account=account_for(organization=world.neighbour), amount_cents=100, idempotency_key="x"
    )
    response = client_for(world.owner).get(reverse("org_purchase", args=[world.org.pk, theirs.pk]))
    assert response.status_code == 404


def test_tokens_are_shown_once_and_revocable(world: World) -> None:
    client = client_for(world.member)
    page = client.post(reverse("personal_tokens"), {"name": "laptop"}).content.decode()
    token = world.member.api_tokens.get()
    raw = page.split('id="new-token">')[1].split("<")[0]
    assert raw.startswith(token.prefix)
    assert raw not in client.get(reverse("personal_tokens")).content.decode()
    assert (
        client_for(world.outsider)
        .post(reverse("personal_token_revoke", args=[token.pk]))
        .status_code
        == 404
    )
    client.post(reverse("personal_token_revoke", args=[token.pk]))
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_the_admin_never_edits_a_balance(world: World, admin_client) -> None:  # type: ignore[no-untyped-def]
    """Money moves only through grants and adjustments: the account's admin page is read-only
    and shows dollars, with the exact microdollars beside them."""
    account = account_for(organization=world.org)
    fund(account, 10 * DOLLAR + 123)
    url = reverse("admin:credits_creditaccount_change", args=[account.pk])
    page = admin_client.get(url).content.decode()
    assert "$10.000123" in page
    assert "10,000,123 µ$" in page
    assert reverse("admin:credits_creditaccount_grant", args=[account.pk]) in page
    assert admin_client.post(url, {"balance": 10**15}).status_code == 403
    account.refresh_from_db()
    assert account.balance == 10 * DOLLAR + 123
