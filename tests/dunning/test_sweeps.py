"""The sweeps and the staff actions: only organizations in grace or suspension are read (an
index, not a scan), each move happens once, and staff moves carry a reason and an audit event."""

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from dunning import lifecycle, sweeps, tasks
from dunning.exceptions import LifecycleError
from dunning.models import LifecycleTransition
from invoices.models import Invoice
from organizations.models import AuditEvent, Organization
from payments.sandbox import engine
from tests.conftest import World
from tests.invoices.conftest import T0, Step, card_use, customer_of, subjects, subscribe
from tests.payments.sandbox_helpers import FAILS_ON_CHARGE, GOOD

State = Organization.BillingState
pytestmark = pytest.mark.django_db


def in_grace(organization: Organization, ends: Any) -> None:
    Organization.objects.filter(pk=organization.pk).update(
        billing_state=State.GRACE, grace_ends_at=ends, billing_state_since=ends
    )
    organization.refresh_from_db()


def suspended(organization: Organization, since: Any) -> None:
    Organization.objects.filter(pk=organization.pk).update(
        billing_state=State.SUSPENDED, suspended_at=since, billing_state_since=since
    )
    organization.refresh_from_db()


def plan(queryset: Any) -> str:
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE organizations_organization")
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_the_sweeps_read_the_partial_indexes_not_the_table(db: None) -> None:
    Organization.objects.bulk_create(Organization(name=f"Org {n}") for n in range(3000))
    now = timezone.now()
    for n, org in enumerate(Organization.objects.order_by("pk")[:6]):
        if n % 2:
            in_grace(org, now - timedelta(minutes=n))
        else:
            suspended(org, now - timedelta(days=31))
    due_grace = Organization.objects.filter(billing_state=State.GRACE, grace_ends_at__lte=now)
    due_purge = Organization.objects.filter(
        billing_state=State.SUSPENDED, suspended_at__lte=now - timedelta(days=30)
    )
    assert "organization_grace_due" in plan(due_grace)
    assert "organization_suspended_since" in plan(due_purge)
    assert "Seq Scan" not in plan(due_grace) + plan(due_purge)


def test_a_sweep_takes_the_same_queries_for_10_or_1000_active_organizations(
    db: None, django_assert_max_num_queries: Any
) -> None:
    Organization.objects.bulk_create(Organization(name=f"Org {n}") for n in range(10))
    with django_assert_max_num_queries(4):
        assert sweeps.dunning_sweep() == {"graced": 0, "reminded": 0, "suspended": 0, "failed": 0}
    Organization.objects.bulk_create(Organization(name=f"More {n}") for n in range(1000))
    with django_assert_max_num_queries(4):
        sweeps.dunning_sweep()
    with django_assert_max_num_queries(3):
        assert sweeps.retention_sweep() == {"warned": 0, "purged": 0, "failed": 0}


def test_a_suspension_happens_once_however_often_it_is_asked(world: World) -> None:
    in_grace(world.org, timezone.now() - timedelta(seconds=1))
    seen_by_two_sweeps = [Organization.objects.get(pk=world.org.pk) for _ in range(2)]
    results = [
        lifecycle.organization_suspend(organization=org, reason="grace ended", due_only=True)
        for org in seen_by_two_sweeps
    ]
    assert results[0] is not None
    assert results[1] is None
    assert LifecycleTransition.objects.count() == 1
    assert AuditEvent.objects.filter(action="billing.suspend").count() == 1


def test_an_extended_grace_is_not_suspended_by_a_sweep_that_read_the_old_deadline(
    world: World,
) -> None:
    now = timezone.now()
    in_grace(world.org, now - timedelta(seconds=1))
    seen = Organization.objects.get(pk=world.org.pk)  # what a sweep read
    Organization.objects.filter(pk=world.org.pk).update(grace_ends_at=now + timedelta(days=2))
    assert lifecycle.organization_suspend(organization=seen, reason="x", due_only=True) is None
    world.org.refresh_from_db()
    assert world.org.billing_state == State.GRACE


def test_paying_on_a_gateway_retry_restores_on_the_event_not_at_the_next_sweep(
    world: World, step: Step
) -> None:
    with time_machine.travel(T0, tick=False) as traveller:
        customer = customer_of(world.org)
        step(lambda: subscribe(customer, world.org))
        card_use(customer, FAILS_ON_CHARGE)
        renewal = T0.replace(month=4)
        for at in (renewal, renewal + timedelta(hours=1), renewal + timedelta(days=1, hours=1)):
            traveller.move_to(at + timedelta(seconds=1))
            step(engine.tick)
        world.org.refresh_from_db()
        assert world.org.billing_state == State.GRACE
        card_use(customer, GOOD)  # the customer fixes the card in the portal
        mail.outbox.clear()
        traveller.move_to(renewal + timedelta(days=3, hours=1, seconds=1))
        step(engine.tick)  # the gateway's own retry on day 3 now succeeds
    world.org.refresh_from_db()
    assert world.org.billing_state == State.ACTIVE
    transition = LifecycleTransition.objects.filter(to_state=State.ACTIVE).get()
    assert transition.invoice == Invoice.objects.get(billing_reason="subscription_cycle")
    assert transition.actor is None
    assert subjects() == ["Acme Robotics is active again"]


def test_the_lifecycle_runs_on_the_sandbox_clock_that_sandbox_advance_moves(
    world: World, step: Step
) -> None:
    customer = customer_of(world.org)
    step(lambda: subscribe(customer, world.org))
    card_use(customer, FAILS_ON_CHARGE)
    for moment in ("renewal", "retry"):  # the renewal fails, and the retry a day later
        step(lambda moment=moment: call_command("sandbox_advance", to=moment, stdout=StringIO()))
    world.org.refresh_from_db()
    assert world.org.billing_state == State.GRACE
    assert world.org.grace_ends_at is not None
    past_grace = world.org.grace_ends_at - engine.now() + timedelta(minutes=1)
    hours = past_grace.total_seconds() / 3600
    step(lambda: call_command("sandbox_advance", hours=hours, stdout=StringIO()))
    step(lambda: call_command("billing_jobs", stdout=StringIO()))
    world.org.refresh_from_db()
    assert world.org.billing_state == State.SUSPENDED


def test_grace_reminder_comes_again_after_staff_extend_the_grace(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    now = timezone.now()
    in_grace(world.org, now + timedelta(hours=23))
    with django_capture_on_commit_callbacks(execute=True):
        assert sweeps.dunning_sweep(now=now)["reminded"] == 1
        lifecycle.organization_grace_extend(
            organization=world.org, actor=world.owner, reason="promised to pay", days=2
        )
        assert sweeps.dunning_sweep(now=now)["reminded"] == 0
        assert sweeps.dunning_sweep(now=now + timedelta(days=2))["reminded"] == 1
    # Each reminder states the time really left, not a fixed "24 hours".
    assert subjects().count("Acme Robotics will be suspended in 23 hours") == 2


def test_a_short_retention_sends_no_seven_day_notice(
    world: World, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.BILLING_RETENTION_PERIOD = timedelta(days=5)
    now = timezone.now()
    suspended(world.org, now - timedelta(days=4, hours=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert sweeps.retention_sweep(now=now)["warned"] == 1
        assert sweeps.retention_sweep(now=now)["warned"] == 0
    assert subjects() == ["Acme Robotics's data will be deleted in 1 day"]


# Staff


@pytest.fixture
def staff() -> Client:
    admin = get_user_model().objects.create_superuser(email="staff@kilo.test", password="x" * 12)
    client = Client()
    client.force_login(admin)
    return client


def admin_action(staff: Client, organization: Organization, action: str, **data: Any) -> Any:
    return staff.post(
        reverse("admin:dunning_organizationlifecycle_changelist"),
        {"action": action, "_selected_action": [str(organization.pk)], **data},
    )


def test_staff_extend_grace_with_a_reason(world: World, staff: Client) -> None:
    deadline = timezone.now() + timedelta(hours=5)
    in_grace(world.org, deadline)
    form = admin_action(staff, world.org, "extend_grace")
    assert form.status_code == 200
    assert b"reason" in form.content
    done = admin_action(staff, world.org, "extend_grace", apply="1", reason="Bank holiday", days=4)
    assert done.status_code == 302
    world.org.refresh_from_db()
    assert world.org.grace_ends_at == deadline + timedelta(days=4)
    transition = LifecycleTransition.objects.get()
    assert (transition.from_state, transition.to_state, transition.reason) == (
        "grace",
        "grace",
        "Bank holiday",
    )
    assert transition.actor is not None
    assert transition.actor.email == "staff@kilo.test"
    event = AuditEvent.objects.get(action="billing.grace_extend")
    assert event.details["reason"] == "Bank holiday"


def test_staff_extend_grace_brings_a_suspended_organization_back(
    world: World, staff: Client
) -> None:
    suspended(world.org, timezone.now() - timedelta(days=2))
    admin_action(staff, world.org, "extend_grace", apply="1", reason="Paying by wire", days=7)
    world.org.refresh_from_db()
    assert world.org.billing_state == State.GRACE
    assert world.org.suspended_at is None


def test_staff_suspend_now_and_restore(world: World, staff: Client) -> None:
    assert admin_action(staff, world.org, "suspend_now", apply="1", reason="").status_code == 200
    assert Organization.objects.get(pk=world.org.pk).billing_state == State.ACTIVE
    admin_action(staff, world.org, "suspend_now", apply="1", reason="Chargeback")
    assert Organization.objects.get(pk=world.org.pk).billing_state == State.SUSPENDED
    admin_action(staff, world.org, "restore", apply="1", reason="Resolved by phone")
    assert Organization.objects.get(pk=world.org.pk).billing_state == State.ACTIVE
    assert list(AuditEvent.objects.order_by("pk").values_list("action", flat=True)) == [
        "billing.suspend",
        "billing.restore",
    ]
    assert list(LifecycleTransition.objects.order_by("pk").values_list("to_state", "reason")) == [
        ("suspended", "Chargeback"),
        ("active", "Resolved by phone"),
    ]


def test_staff_cannot_restore_an_active_organization(world: World, staff: Client) -> None:
    response = admin_action(staff, world.org, "restore", apply="1", reason="why not")
    assert response.status_code == 302
    assert not LifecycleTransition.objects.exists()
    with pytest.raises(LifecycleError):
        lifecycle.organization_grace_extend(
            organization=world.org, actor=world.owner, reason="x", days=1
        )


def test_the_admin_shows_the_timeline(world: World, staff: Client) -> None:
    lifecycle.organization_suspend(organization=world.org, reason="Chargeback")
    page = staff.get(
        reverse("admin:dunning_organizationlifecycle_change", args=[world.org.pk])
    ).content.decode()
    assert "Timeline" in page
    assert "Chargeback" in page


# One code path for beat and the command


def test_billing_jobs_runs_every_beat_job_once(world: World) -> None:
    in_grace(world.org, timezone.now() - timedelta(seconds=1))
    out = StringIO()
    call_command("billing_jobs", stdout=out)
    lines = out.getvalue().splitlines()
    beat = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    ran = [line.split(":")[0] for line in lines]
    assert ran == [name for name, _, _ in settings.PERIODIC_JOBS]
    assert {task for name, task, _ in settings.PERIODIC_JOBS if name in ran} == beat
    assert len(beat) == 11
    assert "dunning_sweep: {'graced': 0, 'reminded': 0, 'suspended': 1, 'failed': 0}" in lines
    world.org.refresh_from_db()
    assert world.org.billing_state == State.SUSPENDED


def test_billing_jobs_can_run_one_and_refuses_unknown_names(db: None) -> None:
    out = StringIO()
    call_command("billing_jobs", only=["retention_sweep"], stdout=out)
    assert out.getvalue().startswith("retention_sweep: ")
    with pytest.raises(CommandError, match="Unknown job nope"):
        call_command("billing_jobs", only=["nope"])


def test_the_beat_tasks_call_the_same_sweeps(world: World) -> None:
    in_grace(world.org, timezone.now() - timedelta(seconds=1))
    assert tasks.dunning_sweep.delay().get() == {
        "graced": 0,
        "reminded": 0,
        "suspended": 1,
        "failed": 0,
    }
    assert tasks.retention_sweep.delay().get() == {"warned": 0, "purged": 0, "failed": 0}


@pytest.mark.parametrize(
    "name",
    [
        "admin:invoices_invoice_changelist",
        "admin:billing_billingprofile_changelist",
        "admin:dunning_lifecycletransition_changelist",
        "admin:dunning_organizationlifecycle_changelist",
    ],
)
def test_the_admin_lists_open(world: World, staff: Client, name: str) -> None:
    lifecycle.organization_suspend(organization=world.org, reason="Chargeback")
    customer_of(world.org)
    response = staff.get(reverse(name))
    assert response.status_code == 200
    assert b"Acme Robotics" in response.content or name.endswith("invoice_changelist")
