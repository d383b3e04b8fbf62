"""The product as its people use it: four journeys in Chromium against a live server and a real
Celery worker (tests/browser/conftest.py). Each asserts what the pages say, and keeps screenshots
of the key pages under pytest's temporary folder (the run's last line says where).

Journeys 2 to 4 start where an earlier one leaves Acme, set up through the services, so that each
runs alone: `PYTEST_ARGS=tests/browser make test`, or `-k billing_manager` for one."""

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from django.core import mail
from django.core.management import call_command
from playwright.sync_api import Page, expect

from accounts.models import User
from billing.services import billing_profile_for, gateway_customer_ensure
from billing.templatetags.money import cents
from credits.pricing import prices_load
from credits.services import account_for, api_token_create, credits_purchase
from invoices.models import Invoice
from organizations.models import Membership, Organization
from organizations.roles import Role
from organizations.services import invitation_create, organization_create
from payments.sandbox import engine
from payments.sandbox.engine import Card
from payments.sandbox.models import SandboxCustomer
from seats.models import SeatPlan, SeatSubscription
from seats.services import seats_purchase
from tests.browser.support import requires_chromium, settle
from tests.factories import PASSWORD as FACTORY_PASSWORD
from tests.factories import MembershipFactory, UserFactory

pytestmark = [requires_chromium, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-journey-password-7"
GOOD_CARD = "4242 4242 4242 4242"
FAILING_CARD = "4000 0000 0000 0341"

Snap = Callable[[Page, str], Path]
NewPage = Callable[[], Page]
USAGE = {
    "provider": "anthropic",
    "model": "claude-sonnet-4",
    "input_tokens": 1200,
    "output_tokens": 300,
}
# claude-sonnet-4 at list price: 1,200 × $3/M in + 300 × $15/M out = $0.0036 + $0.0045.
USAGE_COST = 8_100


# What a person does, step by step


def sign_up(page: Page, *, email: str, name: str) -> None:
    """Fill the sign-up form the page shows (the invitation link pre-fills the email)."""
    expect(page.get_by_role("heading", name="Create your account")).to_be_visible()
    page.get_by_label("Email:", exact=True).fill(email)
    page.get_by_label("Name:", exact=True).fill(name)
    page.get_by_label("Password:", exact=True).fill(PASSWORD)
    page.get_by_label("Password confirmation:", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()


def pay_with_card(page: Page, number: str, *, button: str) -> None:
    """The sandbox's hosted card form (Checkout, payment method), as a customer fills it."""
    page.get_by_label("Card number:", exact=True).fill(number)
    page.get_by_label("Expiry (MM / YY):", exact=True).fill("12 / 34")
    page.get_by_label("CVC:", exact=True).fill("123")
    page.get_by_role("button", name=button, exact=True).click()


def log_in(page: Page, email: str, password: str = FACTORY_PASSWORD) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Email:", exact=True).fill(email)
    page.get_by_label("Password:", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("navigation", name="Account")).to_contain_text(email)


def pick_profile(page: Page, label: str) -> None:
    """The header's profile switcher, which submits itself when a profile is picked (its script,
    static/js/app.js, listens from DOMContentLoaded on: a person is never faster)."""
    page.wait_for_load_state("load")
    page.get_by_label("Profile", exact=True).select_option(label=label)


def tab(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Organization").get_by_role("link", name=name).click()


def stat(page: Page, label: str) -> str:
    """The big figure of the stat card whose caption is `label`."""
    card = page.locator(".stat").filter(has=page.locator("span.muted", has_text=label))
    return card.locator("strong").inner_text()


def spend(
    live: str, token: str, organization: Organization | None, **fields: Any
) -> requests.Response:
    """What the extension does after a model request: POST /api/usage with the token, and the
    organization's profile chosen by its header."""
    headers = {"Authorization": f"Bearer {token}"}
    if organization is not None:
        headers["X-KiloCode-OrganizationId"] = str(organization.pk)
    body = {**USAGE, "request_id": f"req-{uuid.uuid4()}", **fields}
    return requests.post(f"{live}/api/usage", json=body, headers=headers, timeout=10)


# Where a journey starts: Acme as an owner leaves it after journey 1, set up through the services


def acme(live: str, *, seats: int, credits_usd: int = 0) -> tuple[Organization, User]:
    """Acme Robotics: its owner, a saved 4242 card, `seats` Teams seats and, if asked, credits
    bought with the card; every gateway event delivered and processed by the worker."""
    # Transactional tests restore the migrations' data only on a freshly created test database
    # (--create-db): load the price catalogue in any case, as the data migration does.
    prices_load()
    owner = UserFactory(email="olivia@acme.test", name="Olivia Owner")
    organization = organization_create(actor=owner, name="Acme Robotics")
    customer_id = gateway_customer_ensure(billing_profile_for(organization=organization))
    engine.payment_method_attach(
        customer=SandboxCustomer.objects.get(pk=customer_id),
        card=Card(number=GOOD_CARD, exp_month=12, exp_year=2034, cvc="123"),
    )
    seats_purchase(
        actor=owner,
        organization=organization,
        plan=SeatPlan.objects.get(code="teams"),
        seats=seats,
        idempotency_key=f"journey-seats-{organization.pk}",
        success_url=f"{live}/",
        cancel_url=f"{live}/",
    )
    if credits_usd:
        credits_purchase(
            actor=owner,
            account=account_for(organization=organization),
            amount_cents=credits_usd * 100,
            idempotency_key=f"journey-credits-{organization.pk}",
            success_url=f"{live}/",
            cancel_url=f"{live}/",
        )
    settle()
    return organization, owner


def join(organization: Organization, email: str, role: str, name: str) -> User:
    return MembershipFactory(
        organization=organization, role=role, user=UserFactory(email=email, name=name)
    ).user


# 1. The owner


def test_it_lets_an_owner_sign_up_buy_seats_invite_buy_credits_and_see_invoices(
    live: str, new_page: NewPage, snap: Snap
) -> None:
    page = new_page()
    page.goto("/accounts/signup/")
    sign_up(page, email="olivia@acme.test", name="Olivia Owner")
    expect(page.get_by_role("heading", name="Personal profile")).to_be_visible()
    expect(page.get_by_text("You belong to no organization yet.")).to_be_visible()

    page.get_by_role("link", name="Create an organization").click()
    page.get_by_label("Name:", exact=True).fill("Acme Robotics")
    page.get_by_role("button", name="Create").click()
    expect(page.locator("ul.messages")).to_contain_text(
        "Acme Robotics is created; you are its owner."
    )
    organization = Organization.objects.get(name="Acme Robotics")

    # Seats: no saved card yet, so the purchase goes through the sandbox's Checkout page.
    tab(page, "Seats")
    expect(page.get_by_role("heading", name="No seats bought yet")).to_be_visible()
    page.get_by_label("Seats", exact=True).fill("2")
    page.get_by_role("button", name="Review the purchase").click()
    quote = page.locator("table")
    expect(quote).to_contain_text("Teams, $18.00 per seat per month")
    expect(quote.locator("tr", has_text="Monthly total")).to_contain_text("$36.00 (2 × $18.00)")
    expect(quote.locator("tr", has_text="Charged today")).to_contain_text("$36.00")
    expect(quote.locator("tr", has_text="Card")).to_contain_text("No saved card")
    snap(page, "seats-review")
    page.get_by_role("button", name="Continue to payment").click()

    expect(page.get_by_role("heading", name="Subscribe")).to_be_visible()
    expect(page.locator(".amount")).to_have_text("$36.00")
    snap(page, "sandbox-checkout")
    pay_with_card(page, GOOD_CARD, button="Pay")

    expect(page.get_by_role("heading", name="Seats", exact=True)).to_be_visible()
    assert stat(page, "Purchased") == "2"
    assert stat(page, "Occupied") == "1"
    assert stat(page, "Empty") == "1"
    expect(page.locator(".stat", has_text="Next invoice")).to_contain_text("$36.00")
    snap(page, "seats-bought")

    # The empty seat is for the member about to be invited.
    tab(page, "Members")
    page.get_by_label("Email:", exact=True).fill("max@acme.test")
    page.get_by_label("Role:", exact=True).select_option(label="Member")
    page.get_by_role("button", name="Send invitation").click()
    expect(page.locator("ul.messages")).to_contain_text("Invitation sent to max@acme.test.")
    invitations = page.locator("section", has=page.get_by_role("heading", name="Open invitations"))
    expect(invitations.locator("tr", has_text="max@acme.test")).to_contain_text("Member")
    snap(page, "member-invited")
    (invitation,) = [email for email in mail.outbox if email.to == ["max@acme.test"]]
    assert f"{live}/invitations/" in invitation.body

    # Credits: the card from Checkout is saved, so the confirmation names it and pays at once.
    tab(page, "Credits")
    expect(page.locator("#balance")).to_have_text("$0.00")
    page.get_by_label("$100").check()
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Confirm your purchase")).to_be_visible()
    facts = page.locator("dl.facts")
    expect(facts).to_contain_text("$100.00 USD, once")
    expect(facts).to_contain_text("Visa •••• 4242 (expires 12/2034), now")
    expect(facts).to_contain_text("Acme Robotics")
    snap(page, "credits-confirm")
    page.get_by_role("button", name="Pay $100.00").click()

    expect(page.get_by_role("heading", name="Payment received")).to_be_visible()
    expect(page.get_by_text("$100.00 of credits were added.")).to_be_visible()
    expect(page.locator("#balance")).to_have_text("$100.00")
    snap(page, "credits-paid")

    # Both payments have their invoice once the worker has processed the gateway's events.
    settle()
    page.goto(f"/o/{organization.pk}/invoices/")
    rows = page.locator("section table tbody tr")
    expect(rows).to_have_count(2)
    seats_row = rows.filter(has_text="Seat subscription")
    credits_row = rows.filter(has_text="Credit purchase")
    expect(seats_row).to_contain_text("Paid")
    expect(seats_row).to_contain_text("$36.00 USD")
    expect(credits_row).to_contain_text("Paid")
    expect(credits_row).to_contain_text("$100.00 USD")
    assert stat(page, "Invoices") == "2"
    assert stat(page, "Billed") == "$136.00"
    assert stat(page, "Outstanding") == "$0.00"
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    for number in numbers:
        expect(rows.filter(has_text=number)).to_have_count(1)
    assert all(re.fullmatch(r"KB-\d{6}", number) for number in numbers), numbers
    snap(page, "invoices")
    assert SeatSubscription.objects.get(organization=organization).quantity == 2


# 2. The member


def test_it_lets_an_invited_member_join_pick_the_organization_and_spend_its_credits(
    live: str, new_page: NewPage, snap: Snap
) -> None:
    organization, owner = acme(live, seats=2, credits_usd=100)
    invitation_create(
        actor=owner,
        membership=Membership.objects.get(user=owner),
        email="max@acme.test",
        role=Role.MEMBER,
    )
    (email,) = [email for email in mail.outbox if email.to == ["max@acme.test"]]
    link = re.search(rf"{re.escape(live)}/invitations/\S+", email.body)
    assert link is not None, email.body

    page = new_page()
    page.goto(link.group(0))
    expect(page.get_by_role("heading", name="Join Acme Robotics")).to_be_visible()
    expect(page.locator(".card")).to_contain_text(
        "olivia@acme.test invites max@acme.test to join as Member."
    )
    snap(page, "invitation")
    page.get_by_role("link", name="Create your account to accept").click()
    expect(page.get_by_label("Email:", exact=True)).to_have_value("max@acme.test")
    sign_up(page, email="max@acme.test", name="Max Member")
    page.get_by_role("button", name="Accept and join").click()
    expect(page.locator("ul.messages")).to_contain_text("Welcome to Acme Robotics.")
    expect(page.locator(".page-head")).to_contain_text("You are member.")

    # The profile switcher: to the personal profile and back to Acme's.
    pick_profile(page, "Personal")
    expect(page.get_by_role("heading", name="Personal profile")).to_be_visible()
    expect(page.locator("tr", has_text="Acme Robotics")).to_contain_text("Member")
    pick_profile(page, "Acme Robotics (Member)")
    expect(page.get_by_role("heading", name="Acme Robotics", exact=True)).to_be_visible()
    expect(page.get_by_label("Profile", exact=True)).to_have_value(str(organization.pk))
    snap(page, "acme-profile-picked")

    # Profile → API tokens: the new token is shown once.
    page.get_by_role("navigation", name="Account").get_by_role("link", name="Profile").click()
    page.get_by_role("link", name="API tokens").click()
    expect(page.get_by_text("No tokens yet — create one for your editor above.")).to_be_visible()
    page.get_by_label("Token name:", exact=True).fill("VS Code on my laptop")
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_text("Copy it now: it is shown only this once")).to_be_visible()
    token = page.locator("#new-token").inner_text().strip()
    active = page.locator("section", has=page.get_by_role("heading", name="Active tokens"))
    expect(active.locator("tr", has_text="VS Code on my laptop")).to_contain_text(token[:10])
    snap(page, "api-token")

    # The extension spends Acme's credits with it, once per request id.
    first = spend(live, token, organization, request_id="req-1", project="robot-arm")
    assert first.status_code == 201, first.text
    assert first.json()["cost_microdollars"] == USAGE_COST
    assert first.json()["balance_microdollars"] == 100_000_000 - USAGE_COST
    again = spend(live, token, organization, request_id="req-1", project="robot-arm")
    assert (again.status_code, again.json()) == (200, first.json())
    second = spend(live, token, organization, request_id="req-2", output_tokens=600)
    assert second.status_code == 201, second.text
    # Without the header the personal profile pays, and it has no credits.
    personal = spend(live, token, None)
    assert (personal.status_code, personal.json()["error"]) == (402, "insufficient_balance")
    headers = {
        "Authorization": f"Bearer {token}",
        "X-KiloCode-OrganizationId": str(organization.pk),
    }
    balance = requests.get(f"{live}/api/profile/balance", headers=headers, timeout=10).json()
    spent = USAGE_COST + 1_200 * 3 + 600 * 15
    assert balance == {
        "balance": (100_000_000 - spent) / 1_000_000,
        "balance_microdollars": 100_000_000 - spent,
        "isDepleted": False,
        "status": "active",
        "held_microdollars": 0,
        "available_microdollars": 100_000_000 - spent,
    }
    usage = requests.get(f"{live}/api/profile/usage", headers=headers, timeout=10).json()
    assert [
        (row["model"], row["requests"], row["cost_microdollars"]) for row in usage["by_model"]
    ] == [("claude-sonnet-4", 2, spent)]

    # The Usage tab shows the member their own spend, the moment it is made.
    page.get_by_role("link", name="Kilo Billing").click()  # home: the profile picked, Acme
    expect(page.get_by_role("heading", name="Acme Robotics", exact=True)).to_be_visible()
    tab(page, "Usage")
    expect(page.locator("#usage-scope")).to_contain_text("Your own usage in Acme Robotics.")
    # $0.0207 in all, shown to the cent; under a cent, every digit ($0.0081).
    assert (stat(page, "Spend"), stat(page, "Requests")) == ("$0.02", "2")
    assert (stat(page, "Input tokens"), stat(page, "Output tokens")) == ("2,400", "900")
    by_model = page.locator("#by-model tbody tr")
    expect(by_model).to_have_count(1)
    expect(by_model).to_contain_text(
        re.compile(r"claude-sonnet-4\s+anthropic\s+2\s+2,400\s+900\s+\$0\.02\s+100\.0%")
    )
    by_project = page.locator("#by-project tbody tr")
    expect(by_project.filter(has_text="robot-arm")).to_contain_text(
        re.compile(r"1\s+1,200\s+300\s+\$0\.0081")
    )
    snap(page, "usage-tab")


# 3. The billing manager


def test_it_lets_a_billing_manager_add_seats_from_a_prorated_preview_and_remove_empty_ones(
    live: str, new_page: NewPage, snap: Snap
) -> None:
    organization, _ = acme(live, seats=3)
    join(organization, "max@acme.test", Role.MEMBER, "Max Member")
    join(organization, "bill@acme.test", Role.BILLING_MANAGER, "Bill Billing")
    engine.clock_advance(seconds=10 * 86_400)  # ten days into the period: a partial charge

    page = new_page()
    log_in(page, "bill@acme.test")
    page.get_by_role("link", name="Acme Robotics").click()
    tab(page, "Seats")
    assert (stat(page, "Purchased"), stat(page, "Occupied"), stat(page, "Empty")) == ("3", "2", "1")
    page.get_by_label("Add seats", exact=True).fill("1")
    page.get_by_role("button", name="Preview the charge").click()

    # The preview follows the count as it is typed (htmx), without leaving the page.
    expect(page.get_by_role("heading", name="Add seats")).to_be_visible()
    preview = page.locator("#add-preview")
    expect(preview.locator("tr", has_text="Seats")).to_contain_text("3 → 4 (+1)")
    page.wait_for_load_state("load")  # htmx listens from its start-up on; a person is slower
    page.get_by_label("Seats to add", exact=True).fill("2")
    expect(preview.locator("tr", has_text="Seats")).to_contain_text("3 → 5 (+2)")
    subscription = SeatSubscription.objects.get(organization=organization)
    proration_date = int(preview.locator("input[name=proration_date]").input_value())
    expected = engine.proration_amount(
        unit_amount=1800,
        quantity_change=2,
        period_start=subscription.current_period_start,
        period_end=subscription.current_period_end,
        at=datetime.fromtimestamp(proration_date, tz=UTC),
    )
    assert 0 < expected < 2 * 1800  # pro rata: less than a full month for two seats
    charged = preview.locator("tr", has_text="Charged today")
    expect(charged).to_contain_text(f"{cents(expected)}: 2 × $18.00 for the time left until")
    expect(preview.locator("tr", has_text="Card")).to_contain_text("Visa •••• 4242")
    expect(preview.locator("tr", has_text="New monthly total")).to_contain_text(
        "$90.00 (5 × $18.00)"
    )
    expect(preview.locator("tr", has_text="Billing date")).to_contain_text("Unchanged")
    snap(page, "add-preview")
    page.get_by_role("button", name=f"Pay {cents(expected)} and add 2 seats").click()

    expect(page.locator("ul.messages")).to_contain_text(
        f"Added 2 seats: {cents(expected)} charged today (invoice KB-"
    )
    expect(page.locator("ul.messages")).to_contain_text("You now have 5 seats")
    assert (stat(page, "Purchased"), stat(page, "Empty")) == ("5", "3")
    snap(page, "seats-added")

    # Three seats are empty; asking for four is refused, naming who holds the others.
    page.get_by_label("Remove empty seats", exact=True).fill("4")
    page.get_by_role("button", name="Review the removal").click()
    refusal = page.get_by_role("alert")
    expect(refusal).to_contain_text("You asked to remove 4 seats, but only 3 seats are empty")
    expect(refusal).to_contain_text("olivia@acme.test")
    expect(refusal).to_contain_text("max@acme.test")
    snap(page, "remove-refused")
    page.get_by_label("Empty seats to remove", exact=True).fill("3")
    page.get_by_role("button", name="Review the removal").click()
    expect(page.locator("tr", has_text="Seats")).to_contain_text("5 → 2 (−3 empty)")
    expect(page.locator("tr", has_text="Refund")).to_contain_text("None")
    expect(page.locator("tr", has_text="Next invoice")).to_contain_text("$36.00 instead of $90.00")
    snap(page, "remove-review")
    page.get_by_role("button", name="Remove 3 empty seats").click()
    expect(page.locator("ul.messages")).to_contain_text(
        "Removed 3 empty seats; you now have 2. No refund or credit."
    )
    assert (stat(page, "Purchased"), stat(page, "Occupied"), stat(page, "Empty")) == (
        "2",
        "2",
        "0",
    )
    snap(page, "seats-removed")

    settle()
    tab(page, "Invoices")
    proration = page.locator("section table tbody tr").filter(has_text="Seat proration")
    expect(proration).to_contain_text("Paid")
    expect(proration).to_contain_text(f"{cents(expected)} USD")


# 4. The card that fails


def test_it_takes_a_failing_card_through_grace_and_suspension_and_back_with_pay_now(
    live: str, new_page: NewPage, snap: Snap
) -> None:
    organization, _ = acme(live, seats=2, credits_usd=100)
    member = join(organization, "max@acme.test", Role.MEMBER, "Max Member")
    _, token = api_token_create(user=member, name="laptop")
    assert spend(live, token, organization).status_code == 201

    owner_page = new_page()
    log_in(owner_page, "olivia@acme.test")
    tab(owner_page, "Invoices")
    owner_page.get_by_role("link", name="Billing details & payment method").click()
    payment_method = owner_page.locator("section", has_text="Payment method")
    expect(payment_method).to_contain_text("Visa ending in 4242, expires 12/2034.")
    owner_page.get_by_role("link", name="Update payment method").click()
    expect(owner_page.get_by_role("heading", name="Update payment method")).to_be_visible()
    expect(owner_page.locator("body")).to_contain_text("Current card: Visa •••• 4242")
    pay_with_card(owner_page, FAILING_CARD, button="Save card")
    expect(payment_method).to_contain_text("Visa ending in 0341, expires 12/2034.")
    snap(owner_page, "card-0341-saved")

    # The renewal fails once: an open invoice, no grace yet.
    call_command("sandbox_advance", to="renewal")
    settle()
    owner_page.goto(f"/o/{organization.pk}/invoices/")
    renewal = owner_page.locator("section table tbody tr").filter(has_text="Open")
    expect(renewal).to_contain_text("1 failed")
    expect(renewal).to_contain_text("$36.00 USD")
    expect(owner_page.locator(".banner")).to_have_count(0)

    # The retry a day later fails too: grace, with its deadline and "Pay now" on every page.
    call_command("sandbox_advance", to="retry")
    settle()
    organization.refresh_from_db()
    assert organization.billing_state == Organization.BillingState.GRACE
    assert organization.grace_ends_at is not None
    owner_page.reload()
    banner = owner_page.locator(".banner.grace")
    expect(banner).to_contain_text("Payment failed for Acme Robotics.")
    expect(banner).to_contain_text(
        f"Everything keeps working until {organization.grace_ends_at:%-d %b %Y, %H:%M} UTC; "
        "after that the organization is suspended."
    )
    expect(banner.get_by_role("link", name="Pay now")).to_be_visible()
    snap(owner_page, "grace-banner")
    assert spend(live, token, organization).status_code == 201  # grace: service goes on

    # The grace period ends unpaid: the dunning sweep suspends.
    past_grace = organization.grace_ends_at - engine.now() + timedelta(minutes=1)
    call_command("sandbox_advance", hours=past_grace.total_seconds() / 3600)
    settle()
    call_command("billing_jobs")
    organization.refresh_from_db()
    assert organization.billing_state == Organization.BillingState.SUSPENDED

    member_page = new_page()
    log_in(member_page, "max@acme.test")
    member_page.goto(f"/o/{organization.pk}/")
    suspended = member_page.locator(".suspended-page")
    expect(suspended.get_by_role("heading", name="Acme Robotics is suspended")).to_be_visible()
    expect(suspended).to_contain_text(
        "Ask an owner or billing manager of Acme Robotics to pay the overdue invoice"
    )
    snap(member_page, "member-suspended")
    refused = spend(live, token, organization)
    assert (refused.status_code, refused.json()["error"]) == (402, "organization_suspended")

    # The owner pays from the banner. The failing card is declined again; with a good one the
    # overdue invoice is paid.
    owner_page.reload()
    banner = owner_page.locator(".banner.suspended")
    expect(banner).to_contain_text("Acme Robotics is suspended for non-payment.")
    banner.get_by_role("link", name="Pay now").click()
    expect(owner_page.get_by_role("heading", name="Pay now")).to_be_visible()
    expect(owner_page.locator("tfoot")).to_contain_text("$36.00 USD")
    expect(owner_page.locator("body")).to_contain_text("To the card: Visa ending in 0341")
    snap(owner_page, "pay-now-failing-card")
    # The page is the confirmation: the amount, the card, and a button that says both; no box.
    expect(owner_page.locator("main").get_by_role("checkbox")).to_have_count(0)
    owner_page.get_by_role("button", name="Pay $36.00 now").click()
    expect(owner_page.locator("ul.messages")).to_contain_text(
        "The card was declined: Your card was declined. Update the payment method and try again."
    )
    expect(owner_page.locator(".banner.suspended")).to_be_visible()
    owner_page.get_by_role("link", name="Use another card").click()
    pay_with_card(owner_page, GOOD_CARD, button="Save card")
    # Back where the payer was, with a word that the card is saved.
    expect(owner_page.get_by_role("heading", name="Pay now")).to_be_visible()
    expect(owner_page.locator("ul.messages")).to_contain_text("Card saved: Visa ending in 4242")
    expect(owner_page.locator("body")).to_contain_text("To the card: Visa ending in 4242")
    owner_page.get_by_role("button", name="Pay $36.00 now").click()
    messages = owner_page.locator("ul.messages")
    expect(messages).to_contain_text("Acme Robotics is active again.")
    expect(messages).to_contain_text("Paid KB-")
    expect(owner_page.locator(".banner")).to_have_count(0)
    snap(owner_page, "paid-and-restored")

    # Service is back at once, for everyone.
    member_page.reload()
    expect(member_page.get_by_role("heading", name="Acme Robotics", exact=True)).to_be_visible()
    expect(member_page.locator(".suspended-page")).to_have_count(0)
    snap(member_page, "member-back")
    assert spend(live, token, organization).status_code == 201
