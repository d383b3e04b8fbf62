"""Staff's findings page: filtered by kind, state and payer; both sides side by side; check
again, re-sync from the gateway where safe, mark explained with a note; each audited."""

from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from credits.models import CreditAccount
from credits.services import account_for
from organizations.models import AuditEvent
from reconciliation import differences
from reconciliation.models import Finding
from reconciliation.services import reconcile
from tests.conftest import World, client_for
from tests.factories import UserFactory
from tests.reconciliation.conftest import drop_events
from tests.reconciliation.test_inverse import healthy

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:reconciliation_finding_changelist"


@pytest.fixture
def staff() -> Client:
    return client_for(UserFactory(email="staff@kilo.test", is_staff=True, is_superuser=True))


@pytest.fixture
def drifted(world: World) -> Finding:
    """An open finding: Acme's balance 7 microdollars off its ledger."""
    healthy(world)
    account = account_for(organization=world.org)
    CreditAccount.objects.filter(pk=account.pk).update(balance=account.balance + 7)
    reconcile()
    return Finding.objects.get()


def act(client: Client, action: str, finding: Finding, **form: Any) -> Any:
    return client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [finding.pk], **form},
        follow=True,
    )


def test_staff_filter_findings_by_kind_state_and_payer(
    world: World, staff: Client, drifted: Finding
) -> None:
    page = staff.get(
        reverse(CHANGELIST),
        {"kind": "balance_differs", "state": "open", "payer": str(world.org.pk)},
    )
    assert page.status_code == 200
    text = page.content.decode()
    assert "Acme Robotics" in text
    assert f"credit account {account_for(organization=world.org).pk}" in text
    empty = staff.get(reverse(CHANGELIST), {"kind": "customer_gone"}).content.decode()
    assert "0 findings" in empty


def test_people_who_are_not_staff_do_not_see_findings(world: World, drifted: Finding) -> None:
    response = client_for(world.owner).get(reverse(CHANGELIST))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_a_finding_shows_both_sides_side_by_side(staff: Client, drifted: Finding) -> None:
    page = staff.get(
        reverse("admin:reconciliation_finding_change", args=[drifted.pk])
    ).content.decode()
    assert "The gateway (or the ledger) says" in page
    assert '<td>≠</td><th scope="row">ledger_sum</th><td>100000000</td><td>—</td>' in page
    assert '<td>≠</td><th scope="row">balance</th><td>—</td><td>100000007</td>' in page


def test_staff_mark_a_finding_explained_with_a_note(
    world: World, staff: Client, drifted: Finding
) -> None:
    asked = act(staff, "explain", drifted)
    assert "Why the difference is right" in asked.content.decode()
    refused = act(staff, "explain", drifted, confirm="1", note="")
    assert "Say why the difference is right." in refused.content.decode()
    assert Finding.objects.get().state == "open"

    done = act(staff, "explain", drifted, confirm="1", note="Test data, seven microdollars.")

    assert done.status_code == 200
    finding = Finding.objects.get()
    assert (finding.state, finding.ending, finding.note) == (
        "explained",
        "explained",
        "Test data, seven microdollars.",
    )
    assert finding.ended_by is not None
    assert finding.ended_by.email == "staff@kilo.test"
    event = AuditEvent.objects.get(action="reconciliation.explain")
    assert event.organization == world.org
    assert event.details["finding"] == finding.pk


def test_check_again_ends_a_finding_staff_fixed(
    world: World, staff: Client, drifted: Finding
) -> None:
    still = act(staff, "check_again", drifted, confirm="1", note="")
    assert "still differs" in still.content.decode()
    assert Finding.objects.get().state == "open"
    account = account_for(organization=world.org)
    CreditAccount.objects.filter(pk=account.pk).update(balance=account.balance - 7)

    act(staff, "check_again", drifted, confirm="1", note="Balance put back by hand.")

    finding = Finding.objects.get()
    assert (finding.state, finding.ending, finding.note) == (
        "healed",
        "fixed",
        "Balance put back by hand.",
    )
    assert AuditEvent.objects.filter(action="reconciliation.check_again").count() == 1


def test_resync_is_refused_where_it_is_not_safe(staff: Client, drifted: Finding) -> None:
    page = act(staff, "resync", drifted, confirm="1", note="").content.decode()
    assert "not safe to re-sync" in page
    assert Finding.objects.get().state == "open"


def test_resync_retries_a_heal_that_failed(
    world: World, staff: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refund's heal that failed (the service raised) stays open with its error; staff's
    re-sync runs it again once the cause is gone, and the finding ends fixed by staff."""
    purchase = healthy(world)
    call_command("sandbox_refund", invoice=purchase.invoice_number)
    drop_events()

    def broken(**_: Any) -> bool:
        raise RuntimeError("ledger unavailable")

    monkeypatch.setattr(differences, "purchase_refund_record", broken)
    reconcile()
    finding = Finding.objects.get()
    assert finding.state == "open"
    assert "ledger unavailable" in finding.heal_error
    monkeypatch.undo()

    page = act(staff, "resync", finding, confirm="1", note="").content.decode()

    assert "re-synced" in page
    finding.refresh_from_db()
    assert (finding.state, finding.ending) == ("healed", "fixed")
    assert account_for(organization=world.org).balance == 0
    assert AuditEvent.objects.filter(action="reconciliation.resync").count() == 1
