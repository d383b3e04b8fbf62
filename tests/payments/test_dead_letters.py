"""Dead letters: an event whose processing fails with an error that waiting cannot heal (the
gateway's 404 `resource_missing`, a 400 invalid request) is tried WEBHOOK_PERMANENT_ERROR_ATTEMPTS
times, then set aside as "needs a person": no more automatic retries, shown with its error in the
admin, ADMINS emailed once, replayable by staff once the cause is fixed. Transient errors keep
being retried with a backoff that stops growing at six hours."""

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from itertools import pairwise

import pytest
import time_machine
from django.conf import settings
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from organizations.models import AuditEvent
from payments import dispatch
from payments.gateway import GatewayError
from payments.models import WebhookEvent
from payments.sandbox.gateway import SandboxGateway
from payments.signing import signature_header

NEEDS_PERSON = "needs_person"
ADMIN_EMAIL = "staff@kilo.test"


@pytest.fixture(autouse=True)
def _admins(settings) -> None:  # type: ignore[no-untyped-def]
    settings.ADMINS = [("Kilo Billing staff", ADMIN_EMAIL)]
    settings.WEBHOOK_PERMANENT_ERROR_ATTEMPTS = 3


class ServiceFailed(Exception):
    """What a service raises when the gateway refused it (the gateway error is its cause)."""


failures: list[Exception] = []


@pytest.fixture
def failing() -> Iterator[None]:
    """A handler for a test-only type that raises what `failures` holds next (nothing once it is
    empty: the cause was fixed), and records each run."""

    def handler(event: WebhookEvent) -> None:
        if failures:
            raise failures.pop(0)
        AuditEvent.objects.get_or_create(action="test.done", target=event.event_id)

    dispatch.handles("test.failing")(handler)
    failures.clear()
    yield
    dispatch._handlers["test.failing"].remove(handler)


def post(event_type: str, event_id: str, **obj: object) -> WebhookEvent:
    body = json.dumps(
        {
            "id": event_id,
            "object": "event",
            "created": int(time.time()),
            "data": {"object": obj},
            "livemode": False,
            "type": event_type,
        }
    ).encode()
    response = Client().post(
        reverse("stripe_webhook"),
        data=body,
        content_type="application/json",
        headers={"Stripe-Signature": signature_header(body, secret=settings.STRIPE_WEBHOOK_SECRET)},
    )
    assert response.status_code == 200
    return WebhookEvent.objects.get(event_id=event_id)


def missing(kind: str = "subscription") -> GatewayError:
    return GatewayError(f"No such {kind}: 'sub_gone'", permanent=True, code="resource_missing")


def sweep_until_settled(event: WebhookEvent, *, sweeps: int = 10) -> list[str]:
    """Run the retry sweep whenever the event is next due, as beat would; its statuses."""
    statuses = []
    for _ in range(sweeps):
        event.refresh_from_db()
        if event.next_attempt_at is None:
            break
        with time_machine.travel(event.next_attempt_at + timedelta(seconds=1)):
            dispatch.webhook_events_retry()
        event.refresh_from_db()
        statuses.append(event.status)
    return statuses


def admin_mail() -> list[mail.EmailMessage]:
    return [message for message in mail.outbox if ADMIN_EMAIL in message.to]


@pytest.mark.django_db
def test_an_error_waiting_cannot_heal_is_tried_three_times_then_needs_a_person(
    failing: None,
) -> None:
    failures.extend(ServiceFailed("could not apply") for _ in range(10))
    for failure in failures:
        failure.__cause__ = missing()
    event = post("test.failing", "evt_dead")

    assert dispatch.webhook_event_process(webhook_event_id=event.pk) == "failed"
    assert sweep_until_settled(event) == ["failed", NEEDS_PERSON]

    event.refresh_from_db()
    assert (event.status, event.attempts, event.permanent_failures) == (NEEDS_PERSON, 3, 3)
    assert event.next_attempt_at is None
    assert event.needs_person_since is not None
    assert "No such subscription: 'sub_gone'" in event.last_error
    # Set aside: a day later the sweep still leaves it alone.
    with time_machine.travel(timezone.now() + timedelta(days=1)):
        assert dispatch.owed_event_ids() == []
        assert dispatch.webhook_events_retry() == 0
    event.refresh_from_db()
    assert event.attempts == 3
    # ADMINS were told, once, with the error and where to look.
    [told] = admin_mail()
    assert "evt_dead" in told.subject
    assert "No such subscription: 'sub_gone'" in told.body
    assert "Needs a person" in told.body


@pytest.mark.django_db
def test_a_transient_error_is_retried_with_backoff_for_as_long_as_it_lasts(
    failing: None,
) -> None:
    failures.extend(GatewayError("Stripe APIConnectionError: timed out") for _ in range(10))
    event = post("test.failing", "evt_transient")
    dispatch.webhook_event_process(webhook_event_id=event.pk)

    waits = []
    for _ in range(8):
        event.refresh_from_db()
        assert event.status == "failed"
        assert event.next_attempt_at is not None
        waits.append(event.next_attempt_at)
        with time_machine.travel(event.next_attempt_at + timedelta(seconds=1)):
            dispatch.webhook_events_retry()
    event.refresh_from_db()
    assert (event.status, event.attempts, event.permanent_failures) == ("failed", 9, 0)
    assert event.needs_person_since is None
    assert admin_mail() == []
    # The backoff doubles from 5 minutes and stops growing at 6 hours.
    gaps = [later - earlier for earlier, later in pairwise(waits)]
    assert gaps[0] == pytest.approx(timedelta(minutes=10), abs=timedelta(seconds=5))
    assert gaps[-1] == pytest.approx(timedelta(hours=6), abs=timedelta(seconds=5))
    # Once the cause is gone it goes through.
    failures.clear()
    with time_machine.travel(event.next_attempt_at + timedelta(seconds=1)):
        assert dispatch.webhook_events_retry() == 1
    event.refresh_from_db()
    assert event.status == "processed"


@pytest.mark.django_db
def test_staff_replay_a_dead_letter_once_its_cause_is_fixed_and_are_not_told_again(
    failing: None, admin_client: Client
) -> None:
    failures.extend(missing() for _ in range(4))
    event = post("test.failing", "evt_replayed")
    dispatch.webhook_event_process(webhook_event_id=event.pk)
    sweep_until_settled(event)
    assert len(admin_mail()) == 1
    changelist = reverse("admin:payments_webhookevent_changelist")

    # Replayed while still broken: back to "needs a person" at once, nobody emailed again.
    admin_client.post(changelist, {"action": "replay", "_selected_action": [event.pk]})
    event.refresh_from_db()
    assert (event.status, event.attempts) == (NEEDS_PERSON, 4)
    assert len(admin_mail()) == 1

    # Fixed: the replay processes it.
    failures.clear()
    admin_client.post(changelist, {"action": "replay", "_selected_action": [event.pk]})
    event.refresh_from_db()
    assert (event.status, event.attempts, event.last_error) == ("processed", 5, "")
    assert AuditEvent.objects.filter(action="test.done", target="evt_replayed").count() == 1
    assert AuditEvent.objects.filter(action="webhook.replay", target="evt_replayed").count() == 2


@pytest.mark.django_db
def test_the_admin_lists_what_needs_a_person_with_its_error(
    failing: None, admin_client: Client
) -> None:
    failures.extend(missing("customer") for _ in range(3))
    dead = post("test.failing", "evt_needs_person")
    dispatch.webhook_event_process(webhook_event_id=dead.pk)
    sweep_until_settled(dead)
    fine = post("test.failing", "evt_fine")
    dispatch.webhook_event_process(webhook_event_id=fine.pk)
    changelist = reverse("admin:payments_webhookevent_changelist")

    everything = admin_client.get(changelist).content.decode()
    assert "need a person" in everything  # the warning that links to the list
    listed = admin_client.get(changelist, {"status__exact": NEEDS_PERSON}).content.decode()
    assert "Needs a person" in listed
    assert "evt_needs_person" in listed
    assert "evt_fine" not in listed
    assert "No such customer: &#x27;sub_gone&#x27;" in listed
    page = admin_client.get(
        reverse("admin:payments_webhookevent_change", args=[dead.pk])
    ).content.decode()
    assert "No such customer" in page


@pytest.mark.django_db
def test_a_real_event_for_an_object_the_gateway_does_not_have_ends_needing_a_person() -> None:
    """A seat subscription event whose subscription the gateway no longer knows: the seat
    handler re-reads it and the sandbox answers 404 `resource_missing`, as Stripe would. This was
    retried every 6 hours forever."""
    event = post(
        "customer.subscription.updated",
        "evt_subscription_gone",
        id="sub_1KbNoSuchSubscription",
        object="subscription",
        customer="cus_1KbNoSuchCustomer",
        status="active",
        metadata={},
        items={"data": []},
    )
    dispatch.webhook_event_process(webhook_event_id=event.pk)
    sweep_until_settled(event)

    event.refresh_from_db()
    assert (event.status, event.attempts) == (NEEDS_PERSON, 3)
    assert "No such subscription: 'sub_1KbNoSuchSubscription'" in event.last_error
    assert len(admin_mail()) == 1


@pytest.mark.django_db
def test_the_sandbox_says_which_of_its_errors_waiting_cannot_heal() -> None:
    gateway = SandboxGateway()
    with pytest.raises(GatewayError) as missing_invoice:
        gateway.invoice_retrieve(invoice_id="in_1KbMissing")
    assert (missing_invoice.value.permanent, missing_invoice.value.code) == (
        True,
        "resource_missing",
    )
    assert not GatewayError("timed out").permanent
