"""The customer's dashboard in Chromium (issue 14): the Overview as the home of billing, paying
from the first payment-failed email, a banner only in its own organization, and every dashboard
page on a 390-px phone and a 1280-px desktop without sideways scrolling.

`SCREENSHOTS=/tmp/shots14 make test PYTEST_ARGS=tests/browser/test_dashboard.py` also saves a
full-page screenshot of every page at both sizes as <page>-<width>.png in that folder."""

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page, expect

from billing.services import billing_profile_for, gateway_customer_ensure
from credits.ledger import usage_debit
from credits.models import Purchase, UsageRecord
from credits.services import account_for, api_token_create, credits_purchase
from dunning.closing import organization_delete
from invoices.models import Invoice
from organizations.models import Membership, Organization
from organizations.roles import Role
from organizations.services import invitation_create, organization_create
from payments.sandbox import engine
from payments.sandbox.engine import Card
from payments.sandbox.models import SandboxCustomer
from tests.browser.support import requires_chromium, settle
from tests.browser.test_journeys import (
    FAILING_CARD,
    GOOD_CARD,
    NewPage,
    Snap,
    acme,
    join,
    log_in,
    pay_with_card,
    spend,
    tab,
)
from tests.factories import MembershipFactory, UserFactory
from tests.security.test_isolation import ORG_ROUTES, PAGES, PERSONAL_ROUTES, Route

pytestmark = [requires_chromium, pytest.mark.django_db(transaction=True)]

SIZES = ((390, 844), (1280, 800))
SCREENSHOTS = os.environ.get("SCREENSHOTS", "")


def card(number: str) -> Card:
    return Card(number=number, exp_month=12, exp_year=2034, cvc="123")


def use_card(organization: Organization, number: str) -> None:
    """What the sandbox's card page does: the card becomes the customer's default."""
    customer_id = gateway_customer_ensure(billing_profile_for(organization=organization))
    engine.payment_method_attach(
        customer=SandboxCustomer.objects.get(pk=customer_id), card=card(number)
    )


def first_renewal_fails(organization: Organization) -> Invoice:
    """The card fails at the renewal a month on: one failed attempt, no grace yet."""
    use_card(organization, FAILING_CARD)
    call_command("sandbox_advance", to="renewal")
    settle()
    renewal = Invoice.objects.get(
        billing_profile__organization=organization, billing_reason="subscription_cycle"
    )
    assert (renewal.status, renewal.attempt_count) == ("open", 1)
    organization.refresh_from_db()
    assert organization.billing_state == Organization.BillingState.ACTIVE
    return renewal


def emails_in(log: Path) -> list[dict[str, str]]:
    """The emails the worker sent, as its console backend printed them."""
    messages = []
    for block in log.read_text(errors="replace").split("-" * 79):
        subject = re.search(r"^Subject: (.+)$", block, re.MULTILINE)
        if subject:
            messages.append({"subject": subject.group(1).strip(), "body": block})
    return messages


# 1. The owner's home


def test_it_lands_the_owner_on_the_overview_and_buys_more_credits_from_it(
    live: str, new_page: NewPage, snap: Snap
) -> None:
    organization, _ = acme(live, seats=2, credits_usd=100)
    member = join(organization, "max@acme.test", Role.MEMBER, "Max Member")
    _, token = api_token_create(user=member, name="laptop")
    assert spend(live, token, organization).status_code == 201  # $100 - $0.0081

    page = new_page()
    log_in(page, "olivia@acme.test")
    expect(page.get_by_role("heading", name="Acme Robotics", exact=True)).to_be_visible()
    overview = page.get_by_role("navigation", name="Organization").get_by_role(
        "link", name="Overview"
    )
    expect(overview).to_have_attribute("aria-current", "page")
    expect(page.locator("#balance")).to_have_text("$99.99")  # not $99.9919
    expect(page.locator("[aria-labelledby=seats-title]")).to_contain_text("2 occupied · 0 empty")
    expect(page.locator("[aria-labelledby=next-invoice-title]")).to_contain_text("$36.00")
    snap(page, "overview")

    page.get_by_role("link", name="Buy More Credits").click()
    expect(page.get_by_role("heading", name="Buy credits")).to_be_in_viewport()
    page.get_by_label("$250").check()
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name="Pay $250.00").click()
    expect(page.get_by_role("heading", name="Payment received")).to_be_visible()
    expect(page.locator("#balance")).to_have_text("$349.99")

    tab(page, "Overview")
    expect(page.locator("#balance")).to_have_text("$349.99")
    last = page.locator("section", has=page.get_by_role("heading", name="Last invoices"))
    expect(last.locator("tbody tr").first).to_contain_text("Credit purchase")
    expect(last.locator("tbody tr").first).to_contain_text("$250.00")
    snap(page, "overview-after-250")
    assert Purchase.objects.filter(amount_cents=25_000, status="paid").count() == 1


# 2. Paying from the first payment-failed email


def test_it_lets_a_billing_manager_pay_from_the_first_failure_email(
    live: str, new_page: NewPage, snap: Snap, worker_log: Path
) -> None:
    organization, _ = acme(live, seats=2)
    join(organization, "bill@acme.test", Role.BILLING_MANAGER, "Bill Billing")
    renewal = first_renewal_fails(organization)

    failed = [
        email
        for email in emails_in(worker_log)
        if email["subject"].startswith("Payment failed for Acme Robotics")
    ]
    assert failed, "the worker sent no payment-failed email"
    assert "bill@acme.test" in failed[-1]["body"]
    link = re.search(r"^Pay now: (\S+)$", failed[-1]["body"], re.MULTILINE)
    assert link is not None, failed[-1]["body"]
    assert link.group(1) == f"{live}{reverse('org_pay_now', args=[organization.pk])}"

    page = new_page()
    log_in(page, "bill@acme.test")
    page.goto(link.group(1))
    expect(page.get_by_role("heading", name="Pay now")).to_be_visible()
    expect(page.locator("body")).not_to_contain_text("Nothing is overdue")
    expect(page.locator("tbody")).to_contain_text(renewal.number)
    expect(page.locator("tfoot")).to_contain_text("$36.00 USD")
    expect(page.locator("body")).to_contain_text("To the card: Visa ending in 0341")
    snap(page, "pay-now-first-failure")

    # Another card, and back to Pay now with a word that it is saved.
    page.get_by_role("link", name="Use another card").click()
    pay_with_card(page, GOOD_CARD, button="Save card")
    expect(page.get_by_role("heading", name="Pay now")).to_be_visible()
    expect(page.locator("ul.messages")).to_contain_text("Card saved: Visa ending in 4242")
    expect(page.locator("main").get_by_role("checkbox")).to_have_count(0)
    page.get_by_role("button", name="Pay $36.00 now").click()
    expect(page.locator("ul.messages")).to_contain_text(f"Paid {renewal.number}.")
    settle()
    renewal.refresh_from_db()
    assert (renewal.status, renewal.amount_remaining) == ("paid", 0)
    page.goto(reverse("org_billing", args=[organization.pk]))
    expect(page.locator("body")).to_contain_text("Payments are up to date.")
    snap(page, "paid-from-the-email")


# 3. Each organization's banner in its own pages only


def test_it_shows_a_member_of_two_organizations_only_the_right_banner(
    live: str, new_page: NewPage, snap: Snap
) -> None:
    organization, _ = acme(live, seats=2)
    max_ = join(organization, "max@acme.test", Role.MEMBER, "Max Member")
    globex = organization_create(actor=UserFactory(email="gina@globex.test"), name="Globex")
    Membership.objects.create(organization=globex, user=max_, role=Role.MEMBER)
    deadline = timezone.now() + timedelta(days=3)
    Organization.objects.filter(pk=organization.pk).update(
        billing_state="grace", grace_ends_at=deadline
    )

    page = new_page()
    log_in(page, "max@acme.test")
    page.goto(reverse("org_overview", args=[organization.pk]))
    expect(page.locator(".banner.grace")).to_contain_text("Payment failed for Acme Robotics.")
    page.goto(reverse("org_overview", args=[globex.pk]))
    expect(page.get_by_role("heading", name="Globex", exact=True)).to_be_visible()
    expect(page.locator(".banner")).to_have_count(0)
    snap(page, "globex-without-acme-banner")
    page.goto(reverse("personal_profile"))
    expect(page.locator(".banner")).to_have_count(0)
    expect(page.locator("tr", has_text="Acme Robotics")).to_contain_text("Grace period")
    expect(page.locator("tr", has_text="Globex")).to_contain_text("Active")

    Organization.objects.filter(pk=globex.pk).update(
        billing_state="suspended", suspended_at=timezone.now()
    )
    page.goto(reverse("org_members", args=[organization.pk]))
    expect(page.locator(".banner")).to_have_count(1)
    expect(page.locator(".banner.grace")).to_contain_text("Acme Robotics")
    expect(page.locator("body")).not_to_contain_text("Globex is suspended")
    page.goto(reverse("org_overview", args=[globex.pk]))
    expect(page.locator(".suspended-page")).to_contain_text("Globex is suspended")
    expect(page.locator(".banner.grace")).to_have_count(0)


# 4. Every dashboard page on a phone and a desktop


def _pages_of_the_sweep() -> list[Route]:
    """Every dashboard page a person opens (GET, 200): the isolation sweep's table is the list,
    so a new page is measured here too. CSV exports are files, not pages."""
    return [
        route
        for route in ORG_ROUTES + PERSONAL_ROUTES
        if PAGES[route.table_key].method == "GET"
        and PAGES[route.table_key].ok == 200
        and not route.name.endswith("_csv")
    ]


@pytest.fixture
def dashboard_world(live: str) -> dict[str, Any]:
    """Acme with everything a page can show: seats, credits and usage, a team with an open
    invitation, a failed renewal (so Pay now has an invoice), a personal purchase, a closed
    organization, and Globex suspended (the member's suspension page)."""
    organization, owner = acme(live, seats=5, credits_usd=100)
    member = join(organization, "max@acme.test", Role.MEMBER, "Max Member-Maximilian")
    join(organization, "bill@acme.test", Role.BILLING_MANAGER, "Bill Billing")
    invitation_create(
        actor=owner,
        membership=Membership.objects.get(user=owner, organization=organization),
        email="a-very-long-invitee-address@subsidiary.acme-robotics.test",
        role=Role.MEMBER,
    )
    _, token = api_token_create(user=member, name="laptop")
    for n in range(3):
        assert spend(live, token, organization, project=f"project-{n}").status_code == 201
    api_token_create(user=owner, name="Olivia's workstation with a long name")
    renewal = first_renewal_fails(organization)

    personal_customer = gateway_customer_ensure(billing_profile_for(user=owner))
    engine.payment_method_attach(
        customer=SandboxCustomer.objects.get(pk=personal_customer), card=card(GOOD_CARD)
    )
    personal = credits_purchase(
        actor=owner,
        account=account_for(user=owner),
        amount_cents=2_000,
        idempotency_key="personal-20",
        success_url=f"{live}/",
        cancel_url=f"{live}/",
    ).purchase
    personal_use = usage_debit(
        account_id=account_for(user=owner).pk,
        user_id=owner.pk,
        cost=123_456,
        request_id="personal-receipt",
        provider="anthropic",
        model="claude-sonnet-4",
        input_tokens=41_152,
        output_tokens=0,
        project="a-personal-project-with-a-long-name",
    )
    closed = organization_create(actor=owner, name="Initech Holdings International")
    organization_delete(organization=closed, actor=owner)
    globex = organization_create(actor=UserFactory(email="gina@globex.test"), name="Globex")
    MembershipFactory(organization=globex, user=member, role=Role.MEMBER)
    Organization.objects.filter(pk=globex.pk).update(
        billing_state="suspended", suspended_at=timezone.now()
    )
    # Back to Acme for the owner's header and profile switcher.
    owner.active_organization = organization
    owner.save(update_fields=["active_organization"])
    settle()
    return {
        "org": organization,
        "objects": {
            "org_id": organization.pk,
            "membership_id": Membership.objects.get(user=member, organization=organization).pk,
            "purchase_id": Purchase.objects.filter(account__organization=organization).first().pk,  # type: ignore[union-attr]
            "invoice_id": renewal.pk,
            "closed_id": closed.pk,
            "entry_id": UsageRecord.objects.filter(account__organization=organization)
            .values_list("entry_id", flat=True)
            .first(),
        },
        "personal": {
            "purchase_id": personal.pk,
            "closed_id": closed.pk,
            "entry_id": personal_use.entry_id,
        },
        "globex": globex,
    }


def _url(route: Route, objects: dict[str, Any]) -> str:
    return reverse(route.name, kwargs={keyword: objects[keyword] for keyword in route.keywords})


def _measure(page: Page, name: str, url: str, width: int) -> str | None:
    """Open the page; None when nothing scrolls sideways, else what overflows."""
    response = page.goto(url)
    assert response is not None
    assert response.status == 200 or name == "member-suspended", f"{name}: {response.status}"
    page.wait_for_load_state("load")
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=Path(SCREENSHOTS) / f"{name}-{width}.png", full_page=True)
    scroll_width, inner_width = page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]"
    )
    if scroll_width <= inner_width:
        return None
    widest = page.evaluate(
        """() => [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
            .slice(0, 3).map(e => e.tagName + '.' + e.className).join(', ')"""
    )
    return f"{name} at {width}px: scrollWidth {scroll_width} > {inner_width} ({widest})"


def owner_pages(world: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, address) of every dashboard page the owner opens: the sweep's pages with the
    world's objects, and the states of a few pages that a query string opens."""
    objects = world["objects"]
    org = world["org"]
    routes = _pages_of_the_sweep()
    assert len(routes) >= 25
    pages = [
        (route.name, _url(route, objects if "org_id" in route.keywords else world["personal"]))
        for route in routes
    ]
    pages += [
        ("org_seats_add-preview", reverse("org_seats_add", args=[org.pk]) + "?seats=2"),
        ("org_seats_remove-review", reverse("org_seats_remove", args=[org.pk]) + "?seats=1"),
        ("org_usage-by-member", reverse("org_usage", args=[org.pk]) + "?period=30d&stack=member"),
    ]
    return pages


def member_pages(world: dict[str, Any]) -> list[tuple[str, str]]:
    org = world["org"]
    return [
        ("member-org_overview", reverse("org_overview", args=[org.pk])),
        ("member-org_usage", reverse("org_usage", args=[org.pk])),
        ("member-org_members", reverse("org_members", args=[org.pk])),
        ("member-suspended", reverse("org_overview", args=[world["globex"].pk])),
    ]


def test_every_dashboard_page_fits_a_phone_and_a_desktop(
    live: str, new_page: NewPage, dashboard_world: dict[str, Any]
) -> None:
    problems: list[str] = []
    for email, pages in (
        ("olivia@acme.test", owner_pages(dashboard_world)),
        ("max@acme.test", member_pages(dashboard_world)),
    ):
        for width, height in SIZES:
            page = new_page()
            page.set_viewport_size({"width": width, "height": height})
            log_in(page, email)
            for name, url in pages:
                if problem := _measure(page, name, url, width):
                    problems.append(problem)
    assert not problems, "\n".join(problems)
