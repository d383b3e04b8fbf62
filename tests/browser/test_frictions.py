"""The small frictions of issue 23 (item 13), as a person meets them in Chromium: the last owner
offered "Leave" and refused only after confirming; the auto top-up's error printed screens below
where the browser shows the page; a billing manager asked to create an API token they could never
spend with. (Pay now's extra checkbox is gone: the journeys in test_journeys.py and
test_dashboard.py pay with the page's one button.)"""

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from credits.services import account_for
from organizations.roles import Role
from organizations.services import organization_create
from tests.browser.support import requires_chromium
from tests.browser.test_journeys import NewPage, Snap, acme, join, log_in
from tests.factories import UserFactory

pytestmark = [requires_chromium, pytest.mark.django_db(transaction=True)]


def test_the_last_owner_is_told_why_they_cannot_leave_instead_of_a_leave_link(
    live: str, new_page: NewPage, snap: Snap
) -> None:
    organization, _ = acme(live, seats=2)
    page = new_page()
    log_in(page, "olivia@acme.test")
    page.goto(reverse("org_members", args=[organization.pk]))
    me = page.locator("tr", has_text="olivia@acme.test")
    expect(me.get_by_role("link", name="Leave")).to_have_count(0)
    expect(me).to_contain_text("You are the last owner, so you cannot leave")
    snap(page, "members-last-owner")
    # The address of the leave page, typed or kept from before, explains and offers no button.
    page.goto(reverse("org_leave", args=[organization.pk]))
    expect(page.get_by_role("heading", name="You cannot leave Acme Robotics")).to_be_visible()
    expect(page.get_by_role("button", name="Leave")).to_have_count(0)

    # With a second owner, leaving is offered and works.
    join(organization, "oscar@acme.test", Role.OWNER, "Oscar Owner")
    page.goto(reverse("org_members", args=[organization.pk]))
    page.locator("tr", has_text="olivia@acme.test").get_by_role("link", name="Leave").click()
    page.get_by_role("button", name="Leave").click()
    expect(page.locator("ul.messages")).to_contain_text("You left Acme Robotics.")


def test_an_auto_top_up_error_is_shown_at_the_top_with_the_focus_on_a_phone(
    live: str, new_page: NewPage, snap: Snap
) -> None:
    organization, _ = acme(live, seats=2)
    page = new_page()
    page.set_viewport_size({"width": 390, "height": 844})
    log_in(page, "olivia@acme.test")
    page.goto(reverse("org_credits", args=[organization.pk]))
    page.get_by_label("Top up automatically:", exact=True).check()
    page.get_by_label("When the balance falls under (USD):", exact=True).fill("20")
    page.get_by_label("Buy (USD):", exact=True).fill("1")
    page.get_by_role("button", name="Save auto top-up").click()

    summary = page.get_by_role("alert").filter(has_text="Auto top-up is not saved")
    expect(summary).to_be_in_viewport()
    expect(summary).to_be_focused()
    expect(summary).to_contain_text("Buy (USD):")
    snap(page, "auto-top-up-error")
    # Its link takes the person to the field, which is beside its own error.
    summary.get_by_role("link").click()
    field = page.get_by_label("Buy (USD):", exact=True)
    expect(field).to_be_in_viewport()
    expect(field).to_have_value("1")
    assert not account_for(organization=organization).auto_topup_enabled


def test_a_billing_manager_is_not_asked_to_create_an_api_token(
    live: str, new_page: NewPage
) -> None:
    owner = UserFactory(email="olivia@acme.test", name="Olivia Owner")
    organization = organization_create(actor=owner, name="Acme Robotics")
    join(organization, "bill@acme.test", Role.BILLING_MANAGER, "Bill Billing")
    overview = reverse("org_overview", args=[organization.pk])
    for email, token_step in (("olivia@acme.test", 1), ("bill@acme.test", 0)):
        page = new_page()
        log_in(page, email)
        page.goto(overview)
        checklist = page.locator(".checklist")
        expect(checklist).to_contain_text("Buy seats for the people who use Kilo Code")
        expect(checklist.get_by_text("Create an API token")).to_have_count(token_step)
        expect(checklist.get_by_role("link", name="Create a token")).to_have_count(token_step)
