"""The Celery worker killed (kill -9) in the middle of a webhook event's handler: the handler's
writes and the event's status are one transaction, and the task is acknowledged only after it
ran (acks_late), so the event stays owed and the next worker processes it, exactly once."""

import pytest
from django.db import OperationalError, transaction

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
EVENT = "evt_killed_midway"


def _row_unlocked(pk: int) -> bool:
    """True once nobody holds the event's row lock (the dead worker's backend has gone)."""
    try:
        with transaction.atomic():
            WebhookEvent.objects.select_for_update(nowait=True).filter(pk=pk).exists()
    except OperationalError:
        return False
    return True


@pytest.mark.django_db(transaction=True)
def test_it_processes_an_event_exactly_once_when_the_worker_dies_midway(
    workers: Workers, pointed_at: RedisServer
) -> None:
    first = workers.start()
    with through_the_broker(pointed_at):
        response = post_webhook("test.faults.blocking", EVENT)
    assert response.status_code == 200
    event = WebhookEvent.objects.get(event_id=EVENT)

    wait_for(lambda: workers.started_events() == [EVENT], timeout=30, what="the handler to start")
    first.kill()
    wait_for(lambda: _row_unlocked(event.pk), timeout=30, what="the dead worker's lock to go")

    event.refresh_from_db()
    assert (event.status, event.attempts) == (WebhookEvent.Status.PENDING, 0)
    assert not AuditEvent.objects.filter(action=PROCESSED).exists()
    assert pointed_at.client().hlen("unacked") == 1  # the broker still holds the task

    workers.gate.touch()
    # The unacknowledged task goes to the next worker once its visibility timeout has passed
    # (an hour in production, where the beat sweep gets there first; a second here).
    workers.start(visibility_timeout=1)
    wait_for(
        lambda: WebhookEvent.objects.get(pk=event.pk).status == WebhookEvent.Status.PROCESSED,
        timeout=30,
        what="the restarted worker to process the event",
    )
    event.refresh_from_db()
    assert event.attempts == 1
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
    assert (event.status, event.attempts) == (WebhookEvent.Status.PROCESSED, 1)
