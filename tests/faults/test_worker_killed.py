"""The Celery worker killed (kill -9) in the middle of a webhook event's handler. Handlers run with
no transaction open (no gateway call inside one), so what the handler did before it died stays;
the worker's claim on the event (a lease) keeps others away until it lapses, then the event is
owed again and the next worker, or the retry sweep, runs it to its end. Handlers are idempotent,
so the half done before the kill is not done twice and the rest is done once."""

import pytest
from django.utils import timezone

from organizations.models import AuditEvent
from payments import tasks
from payments.models import WebhookEvent
from tests.faults.conftest import (
    RedisServer,
    Workers,
    post_webhook,
    through_the_broker,
    wait_for,
)

PROCESSED = "test.faults.processed"
HALF_DONE = "test.faults.half_done"
EVENT = "evt_killed_midway"
LEASE_SECONDS = 2


def _owed_again(pk: int) -> bool:
    """The claim has lapsed (or the redelivered task already completed the event)."""
    event = WebhookEvent.objects.get(pk=pk)
    if event.status == WebhookEvent.Status.PROCESSED:
        return True
    return event.next_attempt_at is not None and event.next_attempt_at < timezone.now()


@pytest.mark.django_db(transaction=True)
def test_it_completes_an_event_once_when_the_worker_dies_midway(
    workers: Workers, pointed_at: RedisServer
) -> None:
    first = workers.start(lease=LEASE_SECONDS)
    with through_the_broker(pointed_at):
        response = post_webhook("test.faults.blocking", EVENT)
    assert response.status_code == 200
    event = WebhookEvent.objects.get(event_id=EVENT)

    wait_for(lambda: workers.started_events() == [EVENT], timeout=30, what="the handler to start")
    wait_for(
        lambda: AuditEvent.objects.filter(action=HALF_DONE, target=EVENT).exists(),
        timeout=30,
        what="the handler's first half",
    )
    first.kill()

    event.refresh_from_db()
    # Claimed by the dead worker: processing, one attempt, owed again when the claim lapses.
    assert (event.status, event.attempts) == (WebhookEvent.Status.PROCESSING, 1)
    assert event.next_attempt_at is not None
    assert AuditEvent.objects.filter(action=HALF_DONE, target=EVENT).count() == 1
    assert not AuditEvent.objects.filter(action=PROCESSED).exists()
    assert pointed_at.client().hlen("unacked") == 1  # the broker still holds the task

    workers.gate.touch()
    # The unacknowledged task goes to the next worker once its visibility timeout has passed
    # (an hour in production, where the beat sweep gets there first; a second here); if it comes
    # before the claim lapses it finds the event claimed and leaves it. The sweep, once the claim
    # has lapsed, takes it up in any case.
    workers.start(visibility_timeout=1, lease=LEASE_SECONDS)
    wait_for(lambda: _owed_again(event.pk), timeout=30, what="the dead worker's claim to lapse")
    with through_the_broker(pointed_at):
        tasks.webhook_events_retry.apply_async()
    wait_for(
        lambda: WebhookEvent.objects.get(pk=event.pk).status == WebhookEvent.Status.PROCESSED,
        timeout=30,
        what="the restarted worker to process the event",
    )
    event.refresh_from_db()
    assert event.attempts == 2  # the dead worker's claim, and the one that completed it
    assert AuditEvent.objects.filter(action=HALF_DONE, target=EVENT).count() == 1
    assert AuditEvent.objects.filter(action=PROCESSED, target=EVENT).count() == 1
    assert workers.started_events() == [EVENT, EVENT]  # killed once, completed once

    # A duplicate task and the beat sweep change nothing any more. The worker runs its queue in
    # order, so once a later event is processed, both have run.
    with through_the_broker(pointed_at):
        tasks.webhook_event_process.apply_async(args=[event.pk])
        tasks.webhook_events_retry.apply_async()
        assert post_webhook("test.faults.counted", "evt_after").status_code == 200
    wait_for(
        lambda: AuditEvent.objects.filter(action=PROCESSED, target="evt_after").exists(),
        timeout=30,
        what="the worker to run the duplicate, the sweep and a later event",
    )
    assert AuditEvent.objects.filter(action=PROCESSED, target=EVENT).count() == 1
    assert workers.started_events() == [EVENT, EVENT, "evt_after"]
    event.refresh_from_db()
    assert (event.status, event.attempts) == (WebhookEvent.Status.PROCESSED, 2)
