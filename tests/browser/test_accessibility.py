"""Accessibility in Chromium (issue 23): axe-core finds no violation, of any impact, on any page
a person uses — every dashboard page for each role (owner, admin, billing manager, member) at
390 and 1280 px, the log-in, sign-up and password pages, and the admin pages staff use.

axe-core comes from npm (tests/browser/vendor/axe-core: `npm pack axe-core@4`, with its licence);
it is handed to the page by the test, never served to users. It runs with its default rules (WCAG
2.x A and AA and its best practices): the issue asks for 0 violations, not 0 serious ones."""

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.tokens import default_token_generator
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from playwright.sync_api import Page, expect

from accounts.models import User
from credits.models import CreditAccount
from organizations.models import Organization
from organizations.roles import Role, allows
from payments.models import WebhookEvent
from tests.browser import test_dashboard
from tests.browser.support import requires_chromium
from tests.browser.test_dashboard import SIZES, _pages_of_the_sweep, _url, member_pages, owner_pages
from tests.browser.test_journeys import NewPage, join, log_in
from tests.factories import PASSWORD, UserFactory
from tests.security.test_isolation import PAGES

pytestmark = [requires_chromium, pytest.mark.django_db(transaction=True)]

# Acme with something on every page, as the phone-and-desktop test builds it.
dashboard_world = test_dashboard.dashboard_world

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
# What axe says of each violation: the rule, its impact, and where (the first few nodes).
RUN_AXE = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations.map(v => ({
    id: v.id, impact: v.impact, count: v.nodes.length,
    nodes: v.nodes.slice(0, 3).map(n => n.target.join(' ') + ' ' + n.html.slice(0, 80)),
  }));
}"""


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it stands. The script is evaluated in the page
    rather than added as a <script> element, which the pages' content security policy refuses:
    the page keeps its policy, so axe sees what a person sees."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    return page.evaluate(RUN_AXE)  # type: ignore[no-any-return]


class Audit:
    """Every page's violations, kept to be reported together (one failure lists them all)."""

    def __init__(self) -> None:
        self.found: list[str] = []
        self.pages = 0
        self.nodes = 0

    def check(self, page: Page, label: str) -> None:
        page.wait_for_load_state("load")
        self.pages += 1
        for violation in axe_violations(page):
            self.nodes += violation["count"]
            self.found.append(
                f"{label}: {violation['id']} ({violation['impact']}) × {violation['count']}: "
                + "; ".join(violation["nodes"])
            )

    def open(self, page: Page, label: str, url: str, *, status: int = 200) -> None:
        response = page.goto(url)
        assert response is not None
        assert response.status == status, f"{label}: {response.status}"
        self.check(page, label)

    def assert_clean(self) -> None:
        assert self.pages, "no page was audited"
        assert not self.found, (
            f"axe-core: {len(self.found)} violations ({self.nodes} nodes) on {self.pages} "
            "pages:\n" + "\n".join(self.found)
        )


def role_pages(world: dict[str, Any], role: Role) -> list[tuple[str, str]]:
    """The organization pages a role may open, from the isolation sweep's table."""
    return [
        (f"{role}-{route.name}", _url(route, world["objects"]))
        for route in _pages_of_the_sweep()
        if "org_id" in route.keywords and allows(role, PAGES[route.table_key].permission)  # type: ignore[arg-type]
    ]


def test_every_dashboard_page_has_no_axe_violation_for_any_role(
    live: str, new_page: NewPage, dashboard_world: dict[str, Any]
) -> None:
    join(dashboard_world["org"], "ada@acme.test", Role.ADMIN, "Ada Admin")
    people = (
        ("olivia@acme.test", owner_pages(dashboard_world)),
        ("ada@acme.test", role_pages(dashboard_world, Role.ADMIN)),
        ("bill@acme.test", role_pages(dashboard_world, Role.BILLING_MANAGER)),
        (
            "max@acme.test",
            role_pages(dashboard_world, Role.MEMBER) + member_pages(dashboard_world)[-1:],
        ),
    )
    audit = Audit()
    signed_in: dict[tuple[str, int], Page] = {}
    for email, pages in people:
        for width, height in SIZES:
            page = signed_in[email, width] = new_page()
            page.set_viewport_size({"width": width, "height": height})
            log_in(page, email)
            for name, url in pages:
                status = 403 if name == "member-suspended" else 200
                audit.open(page, f"{name} at {width}px", url, status=status)
    # The lifecycle's banners and pages: Acme in grace, then suspended for non-payment.
    org = dashboard_world["org"]
    overview = reverse("org_overview", args=[org.pk])
    pay_now = reverse("org_pay_now", args=[org.pk])
    Organization.objects.filter(pk=org.pk).update(
        billing_state="grace", grace_ends_at=timezone.now() + timedelta(days=3)
    )
    for (email, width), page in signed_in.items():
        audit.open(page, f"{email} in grace at {width}px", overview)
    Organization.objects.filter(pk=org.pk).update(
        billing_state="suspended", suspended_at=timezone.now()
    )
    for (email, width), page in signed_in.items():
        # The suspension page (refused: 403) for everyone; billing stays open to those who pay.
        audit.open(page, f"{email} suspended at {width}px", overview, status=403)
        if email in ("olivia@acme.test", "bill@acme.test"):
            audit.open(page, f"{email}: pay now, suspended, at {width}px", pay_now)
    audit.assert_clean()


def test_the_log_in_sign_up_and_password_pages_have_no_axe_violation(
    live: str, new_page: NewPage
) -> None:
    person = UserFactory(email="olivia@acme.test", name="Olivia Owner")
    reset = reverse(
        "password_reset_confirm",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(person.pk)),
            "token": default_token_generator.make_token(person),
        },
    )
    audit = Audit()
    for width, height in SIZES:
        page = new_page()
        page.set_viewport_size({"width": width, "height": height})
        for name in ("login", "signup", "password_reset", "password_reset_done"):
            audit.open(page, f"{name} at {width}px", reverse(name))
        audit.open(page, f"password_reset_confirm at {width}px", reset)
        audit.open(
            page, f"password_reset_complete at {width}px", reverse("password_reset_complete")
        )
        # The forms' errors are part of the pages too.
        page.goto(reverse("login"))
        page.get_by_label("Email:", exact=True).fill("olivia@acme.test")
        page.get_by_label("Password:", exact=True).fill("not the password")
        page.get_by_role("button", name="Log in").click()
        audit.check(page, f"login with an error at {width}px")
        page.goto(reverse("signup"))
        page.get_by_role("button", name="Sign up").click()
        audit.check(page, f"signup with errors at {width}px")
        log_in(page, "olivia@acme.test")
        for name in ("password_change", "password_change_done"):
            audit.open(page, f"{name} at {width}px", reverse(name))
    audit.assert_clean()


def test_the_admin_pages_staff_use_have_no_axe_violation(
    live: str, new_page: NewPage, dashboard_world: dict[str, Any]
) -> None:
    UserFactory(email="staff@kilo.test", name="Sam Staff", is_staff=True, is_superuser=True)
    org = dashboard_world["org"]
    purchase_id = dashboard_world["objects"]["purchase_id"]
    account = CreditAccount.objects.get(organization=org)
    event = WebhookEvent.objects.order_by("pk").first()
    assert event is not None
    pages = [
        ("index", reverse("admin:index")),
        ("organizations", reverse("admin:organizations_organization_changelist")),
        ("organization", reverse("admin:organizations_organization_change", args=[org.pk])),
        ("lifecycles", reverse("admin:dunning_organizationlifecycle_changelist")),
        ("lifecycle", reverse("admin:dunning_organizationlifecycle_change", args=[org.pk])),
        ("purchases", reverse("admin:credits_purchase_changelist")),
        ("purchase", reverse("admin:credits_purchase_change", args=[purchase_id])),
        ("refund", reverse("admin:credits_purchase_refund", args=[purchase_id])),
        ("credit account", reverse("admin:credits_creditaccount_change", args=[account.pk])),
        ("grant", reverse("admin:credits_creditaccount_grant", args=[account.pk])),
        ("webhook events", reverse("admin:payments_webhookevent_changelist")),
        ("webhook event", reverse("admin:payments_webhookevent_change", args=[event.pk])),
    ]
    audit = Audit()
    overflow: list[str | None] = []
    for width, height in SIZES:
        page = new_page()
        page.set_viewport_size({"width": width, "height": height})
        audit.open(page, f"admin login at {width}px", reverse("admin:login"))
        page.get_by_label("Email:").fill("staff@kilo.test")
        page.get_by_label("Password:").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(
            page.get_by_role("link", name="Log out").or_(page.locator("#logout-form"))
        ).to_be_visible()
        for name, url in pages:
            audit.open(page, f"admin {name} at {width}px", url)
            overflow.append(sideways(page, f"admin {name} at {width}px"))
        # The lifecycle action's page, which asks for the reason.
        page.goto(reverse("admin:dunning_organizationlifecycle_changelist"))
        page.locator("tr", has_text=org.name).get_by_role("checkbox").check()
        page.get_by_label("Action:").select_option("suspend_now")
        page.get_by_role("button", name="Go").click()
        expect(page.locator("h1")).to_have_text(["Suspend now"])  # one heading, not two
        audit.check(page, f"admin suspend now at {width}px")
        overflow.append(sideways(page, f"admin suspend now at {width}px"))
        # The refund's confirmation page.
        page.goto(reverse("admin:credits_purchase_refund", args=[purchase_id]))
        expect(page.locator("h1")).to_have_text([f"Refund purchase {purchase_id}"])
        page.get_by_label("Amount to refund (USD):").fill("1.00")
        page.get_by_label("Why (goes to the ledger, the audit log and the gateway):").fill("Test")
        page.get_by_role("button", name="Review the refund").click()
        audit.check(page, f"admin refund confirmation at {width}px")
        overflow.append(sideways(page, f"admin refund confirmation at {width}px"))
    assert User.objects.filter(is_staff=True).count() == 1
    audit.assert_clean()
    problems = [problem for problem in overflow if problem]
    assert not problems, "\n".join(problems)


def sideways(page: Page, label: str) -> str | None:
    """None when the page does not scroll sideways, else how wide it is."""
    scroll_width, inner_width = page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]"
    )
    return f"{label}: {scroll_width} px wide" if scroll_width > inner_width else None
