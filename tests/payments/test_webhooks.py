import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import time_machine
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from organizations.models import AuditEvent
from payments import dispatch, tasks
from payments.models import WebhookEvent
from payments.queue import enqueue_after_commit
from payments.signing import signature_header
from tests.conftest import open_transactions
from tests.factories import UserFactory

SECRET = "whsec_test_secret"
URL = reverse("stripe_webhook")
calls: list[str] = []


@pytest.fixture(autouse=True)
def _secret(settings) -> None:  # type: ignore[no-untyped-def]
    settings.STRIPE_WEBHOOK_SECRET = SECRET


@pytest.fixture
def counted() -> Iterator[None]:
    """A handler for a test-only type that counts its runs and fails on request."""

    def handler(event: WebhookEvent) -> None:
        if event.object.get("fail"):
            raise RuntimeError("handler exploded")
        calls.append(event.event_id)

    dispatch.handles("test.counted")(handler)
    calls.clear()
    yield
    dispatch._handlers["test.counted"].remove(handler)


def event(
    event_type: str = "invoice.paid", event_id: str = "evt_1", **obj: object
) -> dict[str, object]:
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2026-08-27",
        "created": int(time.time()),
        "data": {"object": {"id": "in_1", "object": "invoice", **obj}},
        "livemode": False,
        "type": event_type,
    }


def post(
    payload: object, *, secret: str = SECRET, timestamp: int | None = None, raw: bytes | None = None
):  # type: ignore[no-untyped-def]
    body = raw if raw is not None else json.dumps(payload).encode()
    header = signature_header(body, secret=secret, timestamp=timestamp)
    return Client().post(
        URL, data=body, content_type="application/json", headers={"Stripe-Signature": header}
    )


@pytest.mark.django_db
def test_it_stores_a_signed_event_and_answers_200() -> None:
    response = post(event())
    assert response.status_code == 200
    stored = WebhookEvent.objects.get(event_id="evt_1")
    assert (stored.type, stored.status, stored.deliveries) == ("invoice.paid", "pending", 1)


@pytest.mark.django_db
def test_it_refuses_bad_signatures_and_stores_nothing() -> None:
    assert post(event(), secret="whsec_wrong").status_code == 400
    assert (
        Client().post(URL, data=json.dumps(event()), content_type="application/json").status_code
        == 400
    )
    stale = int(time.time()) - 301
    assert post(event(), timestamp=stale).status_code == 400
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db
def test_it_refuses_bodies_that_are_not_events_or_too_large() -> None:
    assert post(None, raw=b"not json").status_code == 400
    assert post({"hello": "world"}).status_code == 400
    assert post(None, raw=b"{" + b" " * (1024 * 1024) + b"}").status_code == 413
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db
def test_unknown_types_are_stored_and_ignored() -> None:
    assert post(event("balance.available", "evt_unknown")).status_code == 200
    stored = WebhookEvent.objects.get(event_id="evt_unknown")
    assert dispatch.webhook_event_process(webhook_event_id=stored.pk) == "ignored"


@pytest.mark.django_db
def test_a_redelivery_is_stored_once(counted: None) -> None:
    payload = event("test.counted", "evt_twice")
    assert post(payload).status_code == 200
    assert post(payload).json() == {"received": True, "duplicate": True}
    stored = WebhookEvent.objects.get(event_id="evt_twice")
    assert stored.deliveries == 2
    dispatch.webhook_event_process(webhook_event_id=stored.pk)
    dispatch.webhook_event_process(webhook_event_id=stored.pk)
    assert calls == ["evt_twice"]


@pytest.mark.django_db
def test_a_failing_handler_is_recorded_and_retried_with_backoff(counted: None) -> None:
    post(event("test.counted", "evt_fail", fail=True))
    stored = WebhookEvent.objects.get(event_id="evt_fail")
    assert dispatch.webhook_event_process(webhook_event_id=stored.pk) == "failed"
    stored.refresh_from_db()
    assert "handler exploded" in stored.last_error
    assert stored.next_attempt_at is not None
    assert dispatch.webhook_events_retry() == 0  # not due yet
    # The cause is fixed (here: the payload no longer asks to fail); the sweep picks it up.
    WebhookEvent.objects.filter(pk=stored.pk).update(payload=event("test.counted", "evt_fail"))
    with time_machine.travel(timezone.now() + timedelta(minutes=6)):
        assert dispatch.webhook_events_retry() == 1
    stored.refresh_from_db()
    assert (stored.status, stored.attempts, stored.last_error) == ("processed", 2, "")
    assert calls == ["evt_fail"]


@pytest.mark.django_db
def test_staff_replay_changes_nothing_and_is_audited(admin_client: Client) -> None:
    post(event("invoice.paid", "evt_replay"))
    stored = WebhookEvent.objects.get(event_id="evt_replay")
    dispatch.webhook_event_process(webhook_event_id=stored.pk)
    response = admin_client.post(
        reverse("admin:payments_webhookevent_changelist"),
        {"action": "replay", "_selected_action": [stored.pk]},
    )
    assert response.status_code == 302
    stored.refresh_from_db()
    assert (stored.status, stored.attempts) == ("processed", 2)
    assert AuditEvent.objects.filter(action="webhook.replay", target="evt_replay").count() == 1


@pytest.mark.django_db
def test_the_event_waits_in_the_database_when_the_broker_is_down(
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks,
    counted: None,  # type: ignore[no-untyped-def]
) -> None:
    def broker_down(*args: object, **kwargs: object) -> None:
        raise ConnectionRefusedError("redis is down")

    monkeypatch.setattr(tasks.webhook_event_process, "apply_async", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        response = post(event("test.counted", "evt_no_redis"))
    assert response.status_code == 200
    assert WebhookEvent.objects.get(event_id="evt_no_redis").status == "pending"
    with time_machine.travel(timezone.now() + dispatch.PICKUP_DELAY + timedelta(seconds=1)):
        assert dispatch.webhook_events_retry() == 1
    assert calls == ["evt_no_redis"]


@pytest.mark.django_db
def test_enqueue_runs_the_task_after_commit(
    django_capture_on_commit_callbacks, counted: None
) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        post(event("test.counted", "evt_queued"))
    assert calls == ["evt_queued"]
    assert WebhookEvent.objects.get(event_id="evt_queued").status == "processed"
    assert enqueue_after_commit  # the path the view uses


@pytest.mark.django_db(transaction=True)
def test_five_simultaneous_deliveries_are_processed_exactly_once(counted: None) -> None:
    payload = event("test.counted", "evt_race")
    body = json.dumps(payload).encode()
    barrier = threading.Barrier(5)
    statuses: list[int] = []

    def deliver() -> None:
        try:
            barrier.wait()
            header = signature_header(body, secret=SECRET)
            response = Client().post(
                URL,
                data=body,
                content_type="application/json",
                headers={"Stripe-Signature": header},
            )
            statuses.append(response.status_code)
            stored = WebhookEvent.objects.get(event_id="evt_race")
            dispatch.webhook_event_process(webhook_event_id=stored.pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 5
    stored = WebhookEvent.objects.get(event_id="evt_race")
    assert (stored.deliveries, stored.status) == (5, "processed")
    assert calls == ["evt_race"]


@pytest.mark.django_db
def test_handlers_run_with_no_transaction_open() -> None:
    """DESIGN.md, Webhooks: gateway calls happen before a transaction opens. The dispatcher opens
    none around the handlers (it used to run them all inside one, holding the event's row lock),
    so a handler reads the gateway first and writes in its own short transactions."""
    seen: list[int] = []

    def handler(event: WebhookEvent) -> None:
        seen.append(open_transactions())

    dispatch.handles("test.in_transaction")(handler)
    try:
        post(event("test.in_transaction", "evt_no_transaction"))
        stored = WebhookEvent.objects.get(event_id="evt_no_transaction")
        assert dispatch.webhook_event_process(webhook_event_id=stored.pk) == "processed"
    finally:
        dispatch._handlers["test.in_transaction"].remove(handler)
    assert seen == [0]


@pytest.mark.django_db
def test_the_dispatcher_refuses_to_run_inside_a_callers_transaction(counted: None) -> None:
    post(event("test.counted", "evt_nested"))
    stored = WebhookEvent.objects.get(event_id="evt_nested")
    with pytest.raises(RuntimeError, match="durable"), transaction.atomic():
        dispatch.webhook_event_process(webhook_event_id=stored.pk)
    assert calls == []
    stored.refresh_from_db()
    assert (stored.status, stored.attempts) == ("pending", 0)


@pytest.mark.django_db
def test_a_worker_that_died_midway_leaves_a_claim_the_sweep_takes_up_once_it_lapses(
    settings,  # type: ignore[no-untyped-def]
) -> None:
    """The first worker's handler did half its work (committed: no transaction around it) and
    died. Its claim keeps other workers and the sweep away until it lapses; then the sweep runs
    the event again, and the idempotent handler completes it without doing the half twice."""
    runs: list[str] = []

    def handler(event: WebhookEvent) -> None:
        runs.append(event.event_id)
        AuditEvent.objects.get_or_create(action="test.half", target=event.event_id)
        if len(runs) == 1:
            raise SystemExit("the worker is killed here")  # not an Exception: nothing records it
        AuditEvent.objects.get_or_create(action="test.whole", target=event.event_id)

    dispatch.handles("test.dies")(handler)
    try:
        post(event("test.dies", "evt_dies"))
        stored = WebhookEvent.objects.get(event_id="evt_dies")
        with pytest.raises(SystemExit):
            dispatch.webhook_event_process(webhook_event_id=stored.pk)
        stored.refresh_from_db()
        assert (stored.status, stored.attempts) == ("processing", 1)
        assert stored.next_attempt_at == pytest.approx(
            timezone.now() + settings.WEBHOOK_PROCESSING_LEASE, abs=timedelta(seconds=5)
        )
        # Claimed: a duplicate task and the sweep leave it to its worker meanwhile.
        assert dispatch.webhook_event_process(webhook_event_id=stored.pk) is None
        assert dispatch.webhook_event_replay(event=stored) == "processing"
        assert dispatch.webhook_events_retry() == 0
        lapsed = timezone.now() + settings.WEBHOOK_PROCESSING_LEASE + timedelta(seconds=1)
        with time_machine.travel(lapsed):
            assert dispatch.webhook_events_retry() == 1
    finally:
        dispatch._handlers["test.dies"].remove(handler)
    stored.refresh_from_db()
    assert (stored.status, stored.attempts, stored.next_attempt_at) == ("processed", 2, None)
    assert runs == ["evt_dies", "evt_dies"]
    assert AuditEvent.objects.filter(action="test.half", target="evt_dies").count() == 1
    assert AuditEvent.objects.filter(action="test.whole", target="evt_dies").count() == 1


@pytest.mark.django_db
def test_a_late_finish_does_not_overwrite_the_worker_that_took_over(
    settings,  # type: ignore[no-untyped-def]
) -> None:
    """A handler that outlives its claim: another worker takes the event over and finishes it;
    the first one's outcome is then not recorded over the second's."""
    settings.WEBHOOK_PROCESSING_LEASE = timedelta(seconds=30)
    outcomes: list[str | None] = []

    def handler(event: WebhookEvent) -> None:
        if event.attempts == 1:
            with time_machine.travel(timezone.now() + timedelta(minutes=1)):
                outcomes.append(dispatch.webhook_event_process(webhook_event_id=event.pk))
            raise RuntimeError("the slow first run fails late")

    dispatch.handles("test.slow")(handler)
    try:
        post(event("test.slow", "evt_slow"))
        stored = WebhookEvent.objects.get(event_id="evt_slow")
        outcomes.append(dispatch.webhook_event_process(webhook_event_id=stored.pk))
    finally:
        dispatch._handlers["test.slow"].remove(handler)
    assert outcomes == ["processed", None]
    stored.refresh_from_db()
    assert (stored.status, stored.attempts, stored.last_error) == ("processed", 2, "")


def test_the_admin_requires_staff(db) -> None:  # type: ignore[no-untyped-def]
    user = UserFactory()
    client = Client()
    client.force_login(user)
    response = client.get(reverse("admin:payments_webhookevent_changelist"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
