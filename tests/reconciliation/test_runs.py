"""When the reconciler runs and what it records: the recent run reads the webhook inbox, the
daily sweep reads everyone, a dry run moves nothing, staff's explanations hold, the demo's books
agree, and one changed behind the product's back is found and healed."""

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from credits import webhooks as credit_webhooks
from credits.models import CreditAccount
from credits.services import account_for
from invoices.models import Invoice
from organizations.models import AuditEvent, Organization
from payments.gateway import GatewayError
from payments.models import WebhookEvent
from payments.sandbox.gateway import SandboxGateway
from reconciliation.models import Finding, ReconciliationRun
from reconciliation.services import finding_explain, reconcile
from tests.conftest import World, settle
from tests.credits.test_purchases import confirm
from tests.factories import MembershipFactory, OrganizationFactory, UserFactory
from tests.reconciliation.conftest import books, drop_events, found, reconcile_json
from tests.reconciliation.test_inverse import healthy

pytestmark = pytest.mark.django_db

DOLLAR = 1_000_000


def drift(account: CreditAccount, by: int) -> None:
    CreditAccount.objects.filter(pk=account.pk).update(balance=account.balance + by)


def test_the_recent_run_checks_only_payers_with_gateway_activity(world: World) -> None:
    healthy(world)
    neighbour_account = account_for(organization=world.neighbour)
    fund = OrganizationFactory(name="Initech")
    MembershipFactory(organization=fund, role="owner", user=UserFactory(email="o@initech.test"))
    reconcile()
    later = timezone.now() + timedelta(minutes=10)
    with time_machine.travel(later, tick=True):
        drift(neighbour_account, 7)  # no gateway activity: the recent run does not look
        confirm(world, 5_000)  # gateway activity for Acme: its events reach the inbox
        settle()

        recent = reconcile_json(recent=True)

        assert recent == {"checked": 1, "findings": []}
        assert found(reconcile_json()) == [(Finding.Kind.BALANCE_DIFFERS, "open")]
    assert ReconciliationRun.objects.filter(dry_run=False).count() == 4


def test_the_recent_run_applies_what_a_failed_event_meant(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event whose handler failed, set aside long ago (a dead letter): its payer is checked
    at every recent run, and what the event meant is applied from the gateway's truth."""
    purchase = healthy(world)

    def broken(**_: Any) -> bool:
        raise RuntimeError("the refund handler is broken")

    monkeypatch.setattr(credit_webhooks, "purchase_refund_record", broken)
    call_command("sandbox_refund", invoice=purchase.invoice_number, amount_usd="10")
    settle()
    monkeypatch.undo()
    assert WebhookEvent.objects.filter(status="failed").exists()
    assert account_for(organization=world.org).balance == 100 * DOLLAR
    # A run after the event arrived, and two days since: only its failure names the payer.
    ReconciliationRun.objects.create(started_at=timezone.now(), finished_at=timezone.now())
    with time_machine.travel(timezone.now() + timedelta(days=2), tick=True):
        report = reconcile_json(recent=True)

    assert report["checked"] == 1
    assert found(report) == [(Finding.Kind.REFUND_NOT_APPLIED, "healed")]
    assert account_for(organization=world.org).balance == 90 * DOLLAR


def test_a_dry_run_reports_and_moves_nothing(world: World) -> None:
    purchase = healthy(world)
    call_command("sandbox_refund", invoice=purchase.invoice_number)
    drop_events()
    runs = ReconciliationRun.objects.count()
    before = books()

    report = reconcile_json(dry_run=True)

    assert found(report) == [(Finding.Kind.REFUND_NOT_APPLIED, "open")]
    assert books() == before
    assert ReconciliationRun.objects.count() == runs
    assert account_for(organization=world.org).balance == 100 * DOLLAR


def test_an_explained_finding_stays_explained_while_it_stays_as_explained(world: World) -> None:
    healthy(world)
    account = account_for(organization=world.org)
    drift(account, 7)
    reconcile_json()
    finding = Finding.objects.get()
    staff = UserFactory(email="staff@kilo.test", is_staff=True)

    assert finding_explain(finding=finding, actor=staff, note="Seven microdollars, a test.")

    event = AuditEvent.objects.get(action="reconciliation.explain")
    assert (event.organization, event.actor, event.details["note"]) == (
        world.org,
        staff,
        "Seven microdollars, a test.",
    )
    assert found(reconcile_json()) == [(Finding.Kind.BALANCE_DIFFERS, "explained")]
    assert Finding.objects.count() == 1
    drift(account, 8)  # now it differs in another way: a new finding
    assert found(reconcile_json()) == [(Finding.Kind.BALANCE_DIFFERS, "open")]
    assert Finding.objects.filter(state="open").count() == 1


def test_an_explanation_needs_a_note(world: World) -> None:
    healthy(world)
    drift(account_for(organization=world.org), 1)
    reconcile()
    with pytest.raises(ValueError, match="note"):
        finding_explain(finding=Finding.objects.get(), actor=world.owner, note="  ")
    assert Finding.objects.get().state == "open"


def test_the_command_checks_one_organization(world: World) -> None:
    healthy(world)
    drift(account_for(organization=world.neighbour), 3)

    mine = reconcile_json(org=str(world.org.pk))

    assert mine == {"checked": 1, "findings": []}
    assert found(reconcile_json(org=str(world.neighbour.pk))) == [("balance_differs", "open")]
    with pytest.raises(CommandError, match="No organization"):
        call_command("reconcile", org="00000000-0000-0000-0000-000000000000")
    with pytest.raises(CommandError, match="--recent"):
        call_command("reconcile", recent=True, full=True)


def test_the_command_says_what_it_did_in_words(world: World) -> None:
    purchase = healthy(world)
    call_command("sandbox_refund", invoice=purchase.invoice_number)
    drop_events()
    out = StringIO()

    call_command("reconcile", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[0].startswith("healed    Refund not applied: payer ")
    assert lines[-1] == "Checked 1 payer(s): 1 healed, 0 open, 0 explained."


def test_the_periodic_jobs_are_in_the_one_list() -> None:
    jobs = {name: (task, every) for name, task, every in settings.PERIODIC_JOBS}
    assert jobs["reconcile_recent"] == ("reconciliation.tasks.reconcile_recent", 300)
    assert jobs["reconcile_full"] == ("reconciliation.tasks.reconcile_full", 86400)
    assert "reconciliation" not in jobs  # the old balance check, folded into the full sweep
    beat = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"reconciliation.tasks.reconcile_recent", "reconciliation.tasks.reconcile_full"} <= beat


def test_billing_jobs_runs_the_reconciler(world: World) -> None:
    healthy(world)
    drift(account_for(organization=world.org), 2)
    out = StringIO()

    call_command("billing_jobs", only=["reconcile_recent", "reconcile_full"], stdout=out)

    assert out.getvalue().splitlines()[-1] == (
        "reconcile_full: {'checked': 1, 'healed': 0, 'open': 1, 'explained': 0, 'failed': 0}"
    )
    assert Finding.objects.get().kind == Finding.Kind.BALANCE_DIFFERS


def test_after_seed_demo_nothing_is_open_and_a_changed_invoice_is_healed(
    db: None, settings: Any
) -> None:
    """The issue's "done when": after the demo is seeded `reconcile --json` reports no open
    finding; after a local invoice's status is changed behind the product's back, it reports
    that invoice and heals it."""
    settings.DEBUG = True
    call_command("seed_demo", stdout=StringIO())
    settle()

    first = reconcile_json()

    assert [f for f in first["findings"] if f["state"] != "healed"] == []
    assert reconcile_json()["findings"] == []
    acme = Organization.objects.get(name="Acme Robotics")
    invoice = Invoice.objects.filter(billing_profile__organization=acme, status="paid").first()
    assert invoice is not None
    Invoice.objects.filter(pk=invoice.pk).update(status="void")

    report = reconcile_json()

    assert report["findings"] == [
        {
            "kind": "invoice_differs",
            "payer": str(acme.pk),
            "gateway_id": invoice.gateway_id,
            "local": f"invoice {invoice.number}",
            "state": "healed",
        }
    ]
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    assert reconcile_json()["findings"] == []


def test_a_payer_the_gateway_does_not_answer_for_is_tried_next_time(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    healthy(world)
    account = account_for(organization=world.org)
    drift(account, 4)

    def down(self: SandboxGateway, *, customer_id: str) -> Any:
        raise GatewayError("Stripe APIConnectionError: no answer")

    monkeypatch.setattr(SandboxGateway, "customer_retrieve", down)
    report = reconcile(full=True)

    assert report.failed == [str(world.org.pk)]
    assert report.checked == 0
    # The account's own check needs no gateway: it still runs.
    assert [f.kind for f in report.findings] == [Finding.Kind.BALANCE_DIFFERS]
    run = ReconciliationRun.objects.latest("started_at")
    assert (run.failed, run.checked) == (1, 0)


def test_the_daily_sweep_forgets_runs_older_than_ninety_days(db: None) -> None:
    old = ReconciliationRun.objects.create(started_at=timezone.now() - timedelta(days=91))
    kept = ReconciliationRun.objects.create(started_at=timezone.now() - timedelta(days=89))

    reconcile(full=True)

    assert not ReconciliationRun.objects.filter(pk=old.pk).exists()
    assert ReconciliationRun.objects.filter(pk=kept.pk).exists()
    assert ReconciliationRun.objects.count() == 2
