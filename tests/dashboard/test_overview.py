"""The Organization tab, the home of billing: what each role sees, in cents, in a fixed number of
queries; and a brand-new organization's checklist."""

from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest
import time_machine
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from billing.services import billing_profile_for
from credits.ledger import ledger_credit, usage_debit
from credits.models import CreditAccount
from credits.services import account_for, api_token_create
from invoices.models import Invoice
from organizations.models import Membership, Organization
from organizations.roles import Role
from payments.factory import get_gateway
from seats.models import SeatSubscription
from tests.conftest import World, client_for
from tests.credits.conftest import fund
from tests.factories import InvitationFactory, UserFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
_keys = count(1)


@pytest.fixture(autouse=True)
def _frozen_clock() -> object:
    with time_machine.travel(NOW, tick=False):
        yield


def overview(world: World, role: str) -> str:
    response = client_for(world.person(role)).get(reverse("org_overview", args=[world.org.pk]))
    assert response.status_code == 200
    return response.content.decode()


def spend(account: CreditAccount, world: World, cost: int, *, days_ago: int = 0) -> None:
    usage_debit(
        account_id=account.pk,
        user_id=world.member.pk,
        cost=cost,
        request_id=f"o-{next(_keys)}",
        provider="anthropic",
        model="claude-sonnet-4",
        input_tokens=10,
        output_tokens=1,
        at=NOW - timedelta(days=days_ago, hours=1),
    )


def subscription(world: World, **fields: object) -> SeatSubscription:
    defaults: dict[str, object] = {
        "gateway_subscription_id": f"sub_{world.org.pk.hex[:12]}",
        "gateway_created": NOW - timedelta(days=10),
        "status": "active",
        "quantity": 5,
        "unit_amount": 1800,
        "current_period_start": NOW - timedelta(days=10),
        "current_period_end": NOW + timedelta(days=20),
        "activated_at": NOW - timedelta(days=10),
    }
    return SeatSubscription.objects.create(organization=world.org, **{**defaults, **fields})


def invoice(world: World, number: str, **fields: object) -> Invoice:
    defaults: dict[str, object] = {
        "kind": Invoice.Kind.CREDIT_PURCHASE,
        "status": Invoice.Status.PAID,
        "amount_due": 25_000,
        "amount_paid": 25_000,
        "created": NOW - timedelta(days=1),
        "observed_at": NOW,
    }
    return Invoice.objects.create(
        billing_profile=billing_profile_for(organization=world.org),
        gateway_id=f"in_{number}",
        number=number,
        **{**defaults, **fields},
    )


# Access: every role may open it, outsiders get 404 (the sweep checks every role; these are
# the page's own three tests)


def test_the_owner_opens_the_overview(world: World) -> None:
    assert "Credit balance" in overview(world, Role.OWNER)


def test_an_outsider_gets_404(world: World) -> None:
    response = client_for(world.outsider).get(reverse("org_overview", args=[world.org.pk]))
    assert response.status_code == 404


def test_a_member_gets_the_overview_without_the_billing_summary(world: World) -> None:
    page = overview(world, Role.MEMBER)
    assert "Your spending in Acme Robotics" in page
    assert "Credit balance" not in page
    assert "Buy More Credits" not in page
    assert "Last invoices" not in page


# The billing summary


def test_the_balance_reads_in_cents_with_buy_more_credits(world: World) -> None:
    fund(account_for(organization=world.org), 3_700_294_159)
    page = overview(world, Role.BILLING_MANAGER)
    assert '<strong id="balance" title="$3,700.294159 exactly">$3,700.29</strong>' in page
    buy = reverse("org_credits", args=[world.org.pk]) + "#buy-credits"
    assert f'<a class="button" href="{buy}">Buy More Credits</a>' in page
    # Half a cent rounds up: $3,700.295 reads $3,700.30.
    fund(account_for(organization=world.org), 841, key="to-half-a-cent")
    assert ">$3,700.30</strong>" in overview(world, Role.OWNER)


def test_the_burn_rate_and_run_out_date_follow_the_last_seven_days(world: World) -> None:
    account = account_for(organization=world.org)
    fund(account, 100_000_000)  # $100
    for days_ago in range(7):
        spend(account, world, 2_000_000, days_ago=days_ago)  # $2 a day for a week: $14
    spend(account, world, 50_000_000, days_ago=8)  # older than the pace: not counted
    page = overview(world, Role.OWNER)
    # $100 - $14 - $50 = $36 left at $2 a day: 18 more days.
    assert "$36.00</strong>" in page
    assert "<strong>$2.00 <small>per day</small></strong>" in page
    assert "$14.00 in the last 7 days (UTC)." in page
    run_out = (NOW + timedelta(days=18)).date()
    assert f'runs out around <strong class="inline">{run_out:%-d %b %Y}</strong>' in page


def test_a_balance_that_lasts_for_ages_has_no_date(world: World) -> None:
    account = account_for(organization=world.org)
    fund(account, 10**15)  # a billion dollars, spent at a cent a day
    spend(account, world, 70_000)
    page = overview(world, Role.OWNER)
    assert "the balance lasts more than ten years" in page
    assert "runs out" not in page


def test_no_usage_means_no_run_out_date(world: World) -> None:
    fund(account_for(organization=world.org), 10_000_000)
    page = overview(world, Role.OWNER)
    assert "No usage in the last 7 days." in page
    assert "runs out" not in page


def test_seats_next_invoice_last_invoices_and_auto_top_up(world: World) -> None:
    subscription(world, quantity=5)
    InvitationFactory(organization=world.org, email="new@acme.test", invited_by=world.owner)
    for n in range(7):
        invoice(world, f"KB-{n:06d}", created=NOW - timedelta(days=7 - n))
    account = account_for(organization=world.org)
    CreditAccount.objects.filter(pk=account.pk).update(
        auto_topup_enabled=True, auto_topup_threshold=10_000_000, auto_topup_amount_cents=5_000
    )
    page = overview(world, Role.ADMIN)
    # Owner, admin and member hold seats; the invitation too; the billing manager needs none.
    assert "<strong>5 <small>purchased</small></strong>" in page
    assert "4 occupied · 1 empty" in page
    assert f'href="{reverse("org_seats_add", args=[world.org.pk])}?seats=1">Add Seats' in page
    assert f'href="{reverse("org_seats_remove", args=[world.org.pk])}">Remove Seats' in page
    assert "<strong>$90.00</strong>" in page
    assert f"on {NOW + timedelta(days=20):%-d %b %Y, %H:%M} UTC, 5 seats × $18.00" in page
    # The five newest invoices, newest first.
    shown = [f"KB-{n:06d}" for n in range(7) if f">KB-{n:06d}<" in page]
    assert shown == [f"KB-{n:06d}" for n in range(2, 7)]
    assert page.index("KB-000006") < page.index("KB-000002")
    assert "Buys $50.00 when the balance falls under $10.00." in page


def test_a_cancelled_subscription_has_no_next_invoice(world: World) -> None:
    subscription(world, cancel_at_period_end=True)
    page = overview(world, Role.OWNER)
    assert f"The seats end on {NOW + timedelta(days=20):%-d %b %Y} (UTC)" in page
    assert "no further invoice is charged" in page


def test_a_failed_payment_is_the_problem_with_its_one_action(world: World) -> None:
    subscription(world)
    invoice(
        world,
        "KB-000100",
        kind=Invoice.Kind.SEAT_SUBSCRIPTION,
        status=Invoice.Status.OPEN,
        amount_due=9_000,
        amount_paid=0,
        amount_remaining=9_000,
        attempt_count=1,
        next_payment_attempt=NOW + timedelta(days=2),
    )
    page = overview(world, Role.BILLING_MANAGER)
    assert "A payment failed" in page
    assert "1 seat invoice overdue, $90.00 in all" in page
    assert f'<a class="button" href="{reverse("org_pay_now", args=[world.org.pk])}">Pay now' in page
    Organization.objects.filter(pk=world.org.pk).update(
        billing_state="grace", grace_ends_at=NOW + timedelta(days=3)
    )
    page = overview(world, Role.OWNER)
    assert f"grace period until {NOW + timedelta(days=3):%-d %b %Y, %H:%M} UTC" in page


def test_an_auto_top_up_that_failed_says_why(world: World) -> None:
    account = account_for(organization=world.org)
    CreditAccount.objects.filter(pk=account.pk).update(
        auto_topup_last_error="Your card was declined."
    )
    assert "Turned off after a failed charge: Your card was declined." in overview(
        world, Role.OWNER
    )


# What a member sees


def test_a_member_sees_their_own_spend_this_month_their_limit_and_seat(world: World) -> None:
    account = account_for(organization=world.org)
    fund(account, 100_000_000)
    spend(account, world, 1_234_567, days_ago=0)
    spend(account, world, 1_000_000, days_ago=20)  # last month (February)
    usage_debit(
        account_id=account.pk,
        user_id=world.owner.pk,
        cost=9_000_000,
        request_id="owner-spend",
        provider="anthropic",
        model="claude-sonnet-4",
        input_tokens=1,
        output_tokens=1,
        at=NOW - timedelta(hours=2),
    )
    CreditAccount.objects.filter(pk=account.pk).update(member_daily_limit=5_000_000)
    page = overview(world, Role.MEMBER)
    assert '<strong id="my-spend">$1.23</strong>' in page
    assert "This month (March, UTC)" in page
    assert "<strong>$5.00</strong>" in page
    assert "$1.23 spent today" in page
    assert "Monthly budget" in page
    assert "No seat" in page  # no seats bought: the member cannot spend yet
    owner_page = overview(world, Role.OWNER)
    assert '<strong id="my-spend">$9.00</strong>' in owner_page


def test_a_billing_manager_has_no_spending_section(world: World) -> None:
    page = overview(world, Role.BILLING_MANAGER)
    assert "Your spending" not in page
    assert "Credit balance" in page


# A brand-new organization


def test_a_new_organization_gets_the_checklist(world: World) -> None:
    organization = Organization.objects.create(name="Fresh Co")
    Membership.objects.create(organization=organization, user=world.owner, role=Role.OWNER)
    client = client_for(world.owner)
    page = client.get(reverse("org_overview", args=[organization.pk])).content.decode()
    assert "Get Fresh Co started" in page
    for action, name in [
        ("Buy seats", "org_seats"),
        ("Invite people", "org_members"),
        ("Buy credits", "org_credits"),
    ]:
        assert f'href="{reverse(name, args=[organization.pk])}">{action}</a>' in page
    assert f'href="{reverse("personal_tokens")}">Create a token</a>' in page

    # Steps get ticked as they are done; the list goes once the organization is set up.
    Membership.objects.create(organization=organization, user=world.member, role=Role.MEMBER)
    fund(account_for(organization=organization), 1_000_000, key="fresh")
    api_token_create(user=world.owner, name="laptop")
    page = client.get(reverse("org_overview", args=[organization.pk])).content.decode()
    assert page.count('class="done"') == 3
    SeatSubscription.objects.create(
        organization=organization,
        gateway_subscription_id="sub_fresh",
        gateway_created=NOW,
        status="active",
        quantity=2,
        unit_amount=1800,
        current_period_start=NOW,
        current_period_end=NOW + timedelta(days=30),
    )
    page = client.get(reverse("org_overview", args=[organization.pk])).content.decode()
    assert "Get Fresh Co started" not in page


# Query counts stay flat


def _queries(world: World, role: str) -> int:
    client = client_for(world.person(role))
    client.get(reverse("org_overview", args=[world.org.pk]))  # warm the session
    with CaptureQueriesContext(connection) as captured:
        assert client.get(reverse("org_overview", args=[world.org.pk])).status_code == 200
    return len(captured)


@pytest.mark.parametrize("role", [Role.OWNER, Role.MEMBER])
def test_the_overview_costs_the_same_queries_for_a_big_organization(
    world: World, role: str
) -> None:
    subscription(world, quantity=100)
    account = account_for(organization=world.org)
    fund(account, 10**10)
    spend(account, world, 1_000)
    invoice(world, "KB-900000")
    small = _queries(world, role)
    for n in range(40):
        person = UserFactory(email=f"many{n}@acme.test")
        Membership.objects.create(organization=world.org, user=person, role=Role.MEMBER)
        InvitationFactory(organization=world.org, email=f"invited{n}@acme.test")
        invoice(world, f"KB-{n + 1:06d}")
        spend(account, world, 1_000 + n, days_ago=n % 10)
    assert _queries(world, role) == small
    assert small <= 22  # the monthly budgets of the members near theirs: two more


def test_the_overview_never_asks_the_gateway(world: World, settings: Any) -> None:
    subscription(world)
    # Any call for the gateway now fails: get_gateway refuses a gateway it does not know.
    settings.BILLING_GATEWAY = "none"
    with pytest.raises(ImproperlyConfigured):
        get_gateway()
    assert "Credit balance" in overview(world, Role.OWNER)


def test_it_shows_dates_in_utc(world: World) -> None:
    assert timezone.now() == NOW
    assert "UTC" in overview(world, Role.OWNER)


def test_an_account_that_owes_says_so_instead_of_a_run_out_date(world: World) -> None:
    """After a chargeback of spent credits the balance is below zero: the Overview said
    "-$47.01 for every member with a seat" and that it "runs out around" today."""
    account = account_for(organization=world.org)
    fund(account, 10_000_000)
    spend(account, world, 8_000_000)
    ledger_credit(
        account_id=account.pk, amount=-10_000_000, kind="dispute", source="dispute", key="du_x"
    )
    page = overview(world, Role.OWNER)
    assert ">-$8.00</strong>" in page
    assert "$8.00 owed after a refund or chargeback" in page
    assert "The balance is used up" in page
    assert "runs out" not in page
    assert "for every member with a seat" not in page
    credits = client_for(world.owner).get(reverse("org_credits", args=[world.org.pk]))
    assert "$8.00 owed after a refund or chargeback" in credits.content.decode()
