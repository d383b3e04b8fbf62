"""The failed-payment lifecycle against the sandbox, with time-machine: grace, suspension,
restoration in the same request, and the purge after the retention period."""

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.urls import reverse

from dunning import sweeps
from dunning.models import LifecycleTransition
from invoices.models import Invoice
from organizations.access import api_membership_for
from organizations.models import AuditEvent, Invitation, Membership, Organization
from payments.sandbox import engine
from tests.conftest import World, client_for
from tests.factories import InvitationFactory
from tests.invoices.conftest import T0, Step, card_use, customer_of, subjects, subscribe
from tests.payments.sandbox_helpers import FAILS_ON_CHARGE, GOOD

State = Organization.BillingState
pytestmark = pytest.mark.django_db


def state(world: World) -> str:
    world.org.refresh_from_db()
    return world.org.billing_state


def tick(step: Step) -> None:
    step(engine.tick)


def renewal_fails_twice(step: Step, traveller: Any, renewal: Any) -> tuple[Any, Any]:
    """Move to a renewal that fails, then to its first retry; returns (first failure, grace
    start)."""
    traveller.move_to(renewal + timedelta(seconds=30))
    tick(step)  # the renewal invoice, a draft for an hour
    traveller.move_to(renewal + timedelta(hours=1, seconds=30))
    tick(step)  # finalized and charged: attempt 1 fails
    first_failure = renewal + timedelta(hours=1, seconds=30)
    traveller.move_to(first_failure + timedelta(days=1, seconds=30))
    tick(step)  # the retry a day later: attempt 2 fails
    return first_failure, first_failure + timedelta(days=1, seconds=30)


def test_the_whole_timeline(world: World, step: Step) -> None:
    InvitationFactory(organization=world.org, email="later@acme.test")
    neighbours_memberships = Membership.objects.filter(organization=world.neighbour).count()
    contacts = sorted([world.owner.email, world.billing.email])

    with time_machine.travel(T0, tick=False) as traveller:
        customer = customer_of(world.org)
        step(lambda: subscribe(customer, world.org))
        card_use(customer, FAILS_ON_CHARGE)
        assert Invoice.objects.get().status == "paid"

        # Two failures → grace until now + 3 days; each failure emails the billing contacts.
        _first_failure, grace_start = renewal_fails_twice(step, traveller, T0.replace(month=4))
        assert state(world) == State.GRACE
        assert world.org.grace_ends_at == grace_start + timedelta(days=3)
        assert len(mail.outbox) == 2
        assert all(m.subject.startswith("Payment failed for Acme Robotics") for m in mail.outbox)
        assert all(sorted(m.to) == contacts for m in mail.outbox)
        assert "grace period" in mail.outbox[1].body
        renewal_invoice = Invoice.objects.get(billing_reason="subscription_cycle")
        assert (renewal_invoice.status, renewal_invoice.attempt_count) == ("open", 2)

        # Grace: everything works, every page shows the amber banner with the deadline.
        page = client_for(world.member).get(reverse("org_overview", args=[world.org.pk]))
        assert page.status_code == 200
        assert b'class="banner grace"' in page.content
        owner_page = client_for(world.owner).get(reverse("org_members", args=[world.org.pk]))
        assert reverse("org_pay_now", args=[world.org.pk]).encode() in owner_page.content

        # Within 24 hours of the end: one reminder, however often the sweep runs, stating the
        # time really left (23 hours here) and the deadline.
        mail.outbox.clear()
        traveller.move_to(grace_start + timedelta(days=2, hours=1))
        tick(step)  # the sandbox's retry on day 3 fails too: another failure email
        step(sweeps.dunning_sweep)
        step(sweeps.dunning_sweep)
        assert subjects().count("Acme Robotics will be suspended in 23 hours") == 1
        (reminder,) = [m for m in mail.outbox if "will be suspended" in m.subject]
        assert f"{world.org.grace_ends_at:%-d %B %Y, %H:%M} UTC, in 23 hours," in reminder.body

        # At 2 days 23 hours: still grace.
        traveller.move_to(grace_start + timedelta(days=2, hours=23))
        step(sweeps.dunning_sweep)
        assert state(world) == State.GRACE

        # Past 3 days: suspended; the API refuses; members get the suspension page.
        mail.outbox.clear()
        traveller.move_to(grace_start + timedelta(days=3, minutes=1))
        suspended_at = grace_start + timedelta(days=3, minutes=1)
        assert step(sweeps.dunning_sweep) == {
            "graced": 0,
            "reminded": 0,
            "suspended": 1,
            "failed": 0,
        }
        assert state(world) == State.SUSPENDED
        assert world.org.suspended_at == suspended_at
        assert subjects() == ["Acme Robotics is suspended: payment is overdue"]
        api = api_membership_for(user=world.member, org_id=world.org.pk)
        assert api is not None
        assert api.organization.billing_state == "suspended"  # the API answers 402 on this
        page = client_for(world.member).get(reverse("org_overview", args=[world.org.pk]))
        assert page.status_code == 403
        assert b"Acme Robotics is suspended" in page.content
        assert b'class="banner suspended"' in page.content
        refused = client_for(world.owner).get(reverse("org_members", args=[world.org.pk]))
        assert refused.status_code == 403
        assert b"Update the payment method" in refused.content
        assert (
            client_for(world.owner).get(reverse("org_invoices", args=[world.org.pk])).status_code
            == 200
        )
        assert Membership.objects.filter(organization=world.org).count() == 4  # nothing deleted

        # Day 10 of the suspension: a new card, "pay now", active within the same request.
        traveller.move_to(suspended_at + timedelta(days=10))
        tick(step)
        card_use(customer, GOOD)
        mail.outbox.clear()
        pay_url = reverse("org_pay_now", args=[world.org.pk])
        confirmation = client_for(world.billing).get(pay_url)
        assert confirmation.status_code == 200
        assert b"$90.00" in confirmation.content
        assert b"ending in 4242" in confirmation.content
        response = step(lambda: client_for(world.billing).post(pay_url, {"confirm": "on"}))
        assert response.status_code == 302
        assert state(world) == State.ACTIVE
        assert subjects() == ["Acme Robotics is active again"]
        assert (
            client_for(world.member).get(reverse("org_overview", args=[world.org.pk])).status_code
            == 200
        )
        api = api_membership_for(user=world.member, org_id=world.org.pk)
        assert api is not None
        assert api.organization.billing_state == "active"
        renewal_invoice.refresh_from_db()
        assert renewal_invoice.status == "paid"

        # It fails again: grace, suspension, and 30 days later the purge.
        card_use(customer, FAILS_ON_CHARGE)
        _, grace_again = renewal_fails_twice(step, traveller, T0.replace(month=5))
        assert state(world) == State.GRACE
        traveller.move_to(grace_again + timedelta(days=3, minutes=1))
        step(sweeps.dunning_sweep)
        assert state(world) == State.SUSPENDED
        suspended_again = world.org.suspended_at
        assert suspended_again is not None

        mail.outbox.clear()
        traveller.move_to(suspended_again + timedelta(days=23, minutes=1))
        step(sweeps.retention_sweep)
        step(sweeps.retention_sweep)
        traveller.move_to(suspended_again + timedelta(days=29, minutes=1))
        step(sweeps.retention_sweep)
        assert subjects() == [
            "Acme Robotics's data will be deleted in 7 days",
            "Acme Robotics's data will be deleted in 1 day",
        ]
        traveller.move_to(suspended_again + timedelta(days=30) - timedelta(minutes=1))
        assert step(sweeps.retention_sweep) == {"warned": 0, "purged": 0, "failed": 0}

        traveller.move_to(suspended_again + timedelta(days=30, minutes=1))
        assert step(sweeps.retention_sweep) == {"warned": 0, "purged": 1, "failed": 0}
        assert step(sweeps.retention_sweep) == {"warned": 0, "purged": 0, "failed": 0}

    # Exactly what accounting needs is left: the tombstone, invoices, the timeline, the audit.
    tombstone = Organization.objects.get(pk=world.org.pk)
    assert (tombstone.name, tombstone.billing_state) == ("Acme Robotics", State.DELETED)
    assert tombstone.deleted_at == suspended_again + timedelta(days=30, minutes=1)
    assert tombstone.suspended_at == suspended_again
    assert not Membership.objects.filter(organization=tombstone).exists()
    assert not Invitation.objects.filter(organization=tombstone).exists()
    purge = LifecycleTransition.objects.get(organization=tombstone, to_state=State.DELETED)
    assert purge.reason == "suspended for 30 days without payment"
    assert purge.details == {
        "former_billing_contacts": 2,  # the owner and the billing manager
        "memberships": 4,
        "invitations": 1,
        "usage_records": 0,
        "usage_rollups": 0,
    }
    assert list(Invoice.objects.order_by("created").values_list("kind", "status")) == [
        ("seat_subscription", "paid"),
        ("seat_subscription", "paid"),
        ("seat_subscription", "open"),
    ]
    assert list(
        LifecycleTransition.objects.filter(organization=tombstone)
        .order_by("created_at", "pk")
        .values_list("from_state", "to_state")
    ) == [
        ("active", "grace"),
        ("grace", "suspended"),
        ("suspended", "active"),
        ("active", "grace"),
        ("grace", "suspended"),
        ("suspended", "deleted"),
    ]
    assert AuditEvent.objects.filter(organization=tombstone, action="billing.purge").count() == 1
    assert Membership.objects.filter(organization=world.neighbour).count() == neighbours_memberships
    world.owner.refresh_from_db()
    assert world.owner.active_organization_id is None
    # A deleted organization is gone for everyone.
    overview = reverse("org_overview", args=[tombstone.pk])
    assert client_for(world.owner).get(overview).status_code == 404
    assert api_membership_for(user=world.owner, org_id=tombstone.pk) is None
    assert "Acme Robotics's data has been deleted" in subjects()
    # Its former owner and billing manager still find its invoices and what happened, read-only,
    # on their profile; nobody else does.
    closed_page = reverse("personal_closed_organization", args=[tombstone.pk])
    for former in (world.owner, world.billing):
        profile = client_for(former).get(reverse("personal_profile")).content.decode()
        assert "Closed organizations" in profile
        assert closed_page in profile
        assert "suspended for 30 days without payment" in profile
        page = client_for(former).get(closed_page)
        assert page.status_code == 200
        for number in Invoice.objects.values_list("number", flat=True):
            assert number in page.content.decode()
        assert ">PDF</a>" in page.content.decode()
    for other in (world.admin, world.member, world.outsider):
        assert (
            "Closed organizations"
            not in client_for(other).get(reverse("personal_profile")).content.decode()
        )
        assert client_for(other).get(closed_page).status_code == 404
