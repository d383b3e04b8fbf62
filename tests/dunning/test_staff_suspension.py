"""A staff suspension is its own reason (DESIGN.md, the lifecycle paragraph): its email and pages
say staff suspended the organization and why, offer no "pay now" when nothing is owed, and never
start the retention countdown unless staff choose it."""

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from dunning import lifecycle, sweeps
from dunning.wording import duration_text
from organizations.models import Organization
from tests.conftest import World, client_for

State = Organization.BillingState
pytestmark = pytest.mark.django_db


@pytest.fixture
def staff() -> Client:
    admin = get_user_model().objects.create_superuser(email="staff@kilo.test", password="x" * 12)
    client = Client()
    client.force_login(admin)
    return client


def suspend(staff: Client, organization: Organization, **data: Any) -> Any:
    return staff.post(
        reverse("admin:dunning_organizationlifecycle_changelist"),
        {
            "action": "suspend_now",
            "_selected_action": [str(organization.pk)],
            "apply": "1",
            **data,
        },
        follow=True,
    )


def test_the_admin_form_offers_the_retention_choice_unticked(world: World, staff: Client) -> None:
    form = staff.post(
        reverse("admin:dunning_organizationlifecycle_changelist"),
        {"action": "suspend_now", "_selected_action": [str(world.org.pk)]},
    ).content.decode()
    assert 'name="start_retention"' in form
    assert 'name="start_retention" checked' not in form


def test_a_staff_suspension_says_who_and_why_and_offers_no_pay_now(
    world: World, staff: Client, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        done = suspend(staff, world.org, reason="Suspected card fraud")
    assert "Acme Robotics: suspended; no deletion scheduled" in done.content.decode()
    world.org.refresh_from_db()
    assert world.org.billing_state == State.SUSPENDED
    assert (world.org.suspended_by_staff, world.org.suspension_reason) == (
        True,
        "Suspected card fraud",
    )
    assert world.org.deletion_due_at is None

    (email,) = mail.outbox
    assert email.subject == "Acme Robotics is suspended by Kilo Billing staff"
    assert "Reason: Suspected card fraud" in email.body
    assert "Nothing is owed" in email.body
    assert "Pay now" not in email.body
    assert "No deletion is scheduled" in email.body
    assert sorted(email.to) == sorted([world.owner.email, world.billing.email])

    # The member's suspension page and the owner's billing pages say what it is; nothing to pay.
    member_page = client_for(world.member).get(reverse("org_overview", args=[world.org.pk]))
    assert member_page.status_code == 403
    text = member_page.content.decode()
    assert "Kilo Billing staff suspended Acme Robotics" in text
    assert "Suspected card fraud" in text
    assert "overdue" not in text
    pay_now = reverse("org_pay_now", args=[world.org.pk])
    for page in (
        client_for(world.owner).get(reverse("org_members", args=[world.org.pk])),
        client_for(world.billing).get(reverse("org_invoices", args=[world.org.pk])),
        client_for(world.billing).get(reverse("org_billing", args=[world.org.pk])),
    ):
        content = page.content.decode()
        assert "suspended by Kilo Billing staff" in content or "Suspended by staff" in content
        assert f'href="{pay_now}"' not in content
        assert "for non-payment" not in content
    pay_page = client_for(world.billing).get(pay_now).content.decode()
    assert "Nothing is overdue" in pay_page
    assert "paying does not lift it" in pay_page


def test_a_staff_suspension_without_the_countdown_is_never_purged(
    world: World, staff: Client
) -> None:
    suspend(staff, world.org, reason="Abuse report under review")
    world.org.refresh_from_db()
    far = world.org.suspended_at + timedelta(days=400)  # type: ignore[operator]
    assert sweeps.retention_sweep(now=far) == {"warned": 0, "purged": 0, "failed": 0}
    world.org.refresh_from_db()
    assert world.org.billing_state == State.SUSPENDED


def test_staff_may_choose_to_start_the_countdown(
    world: World, staff: Client, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        done = suspend(staff, world.org, reason="Unpaid wire transfer", start_retention="on")
    world.org.refresh_from_db()
    due = world.org.deletion_due_at
    assert due == world.org.suspended_at + timedelta(days=30)  # type: ignore[operator]
    assert f"suspended; data deleted on {due:%Y-%m-%d} UTC" in done.content.decode()
    assert f"deleted on {due:%-d %B %Y, %H:%M} UTC" in mail.outbox[0].body
    assert sweeps.retention_sweep(now=due - timedelta(minutes=1))["purged"] == 0  # type: ignore[operator]
    assert sweeps.retention_sweep(now=due + timedelta(minutes=1))["purged"] == 1  # type: ignore[operator]
    world.org.refresh_from_db()
    assert world.org.billing_state == State.DELETED


def test_a_suspension_for_non_payment_still_counts_down(world: World) -> None:

    Organization.objects.filter(pk=world.org.pk).update(
        billing_state=State.GRACE, grace_ends_at=timezone.now() - timedelta(minutes=1)
    )
    world.org.refresh_from_db()
    lifecycle.organization_suspend(
        organization=world.org, reason="grace period ended without payment", due_only=True
    )
    world.org.refresh_from_db()
    assert (world.org.suspended_by_staff, world.org.retention_scheduled) == (False, True)
    assert world.org.deletion_due_at is not None


@pytest.mark.parametrize(
    ("left", "text"),
    [
        (timedelta(hours=24), "1 day"),
        (timedelta(hours=23, minutes=55, seconds=59), "23 hours and 55 minutes"),
        (timedelta(hours=23), "23 hours"),
        (timedelta(days=2, hours=3, minutes=10), "2 days and 3 hours"),
        (timedelta(hours=1, minutes=1), "1 hour and 1 minute"),
        (timedelta(minutes=40), "40 minutes"),
        (timedelta(seconds=59), "less than a minute"),
        (timedelta(seconds=-5), "less than a minute"),
    ],
)
def test_the_time_left_is_said_in_words_rounded_down(left: timedelta, text: str) -> None:
    assert duration_text(left) == text


def test_staff_who_may_only_look_cannot_move_an_organization(world: World) -> None:
    """The extend, suspend and restore actions need the permission to change the lifecycle:
    a view-only staff member suspended an organization before."""
    onlooker = get_user_model().objects.create_user(email="look@kilo.test", is_staff=True)
    onlooker.user_permissions.add(Permission.objects.get(codename="view_organizationlifecycle"))
    client = Client()
    client.force_login(onlooker)
    changelist = reverse("admin:dunning_organizationlifecycle_changelist")
    assert 'value="suspend_now"' not in client.get(changelist).content.decode()
    for action in ("suspend_now", "extend_grace", "restore"):
        client.post(
            changelist,
            {
                "action": action,
                "_selected_action": [str(world.org.pk)],
                "apply": "1",
                "reason": "x",
            },
        )
    world.org.refresh_from_db()
    assert world.org.billing_state == State.ACTIVE
    assert world.org.suspended_at is None
    # The permission to change it opens them.
    onlooker.user_permissions.add(Permission.objects.get(codename="change_organizationlifecycle"))
    client.force_login(onlooker)
    assert 'value="suspend_now"' in client.get(changelist).content.decode()
