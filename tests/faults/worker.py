"""A real Celery worker for the fault tests: the project's app and tasks, plus two handlers for
test-only event types. Started by tests/faults/conftest.py as `python -m tests.faults.worker`
with DATABASE_URL (the test database), REDIS_URL (a throwaway redis-server) and:

- FAULTS_STARTS: a file that gets one line each time a handler starts;
- FAULTS_GATE: `test.faults.blocking` waits until this file exists (at most a minute);
- FAULTS_VISIBILITY_TIMEOUT: seconds before an unacknowledged message is delivered again
  (Redis transport; an hour by default, so set short only for a worker that must pick up the
  message of a worker that died);
- WEBHOOK_PROCESSING_LEASE (the setting itself): how long a worker's claim on an event lasts
  (10 minutes by default; seconds here, so that a dead worker's claim lapses within the test)."""

import os
import time
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from config.celery import app  # noqa: E402
from organizations.models import AuditEvent  # noqa: E402
from payments import dispatch  # noqa: E402
from payments.models import WebhookEvent  # noqa: E402
from payments.sandbox import delivery  # noqa: E402

PROCESSED = "test.faults.processed"
HALF_DONE = "test.faults.half_done"


def _nowhere(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    return 0, "fault-test worker: the sandbox delivers nothing from here"


delivery.post = _nowhere
GATE_WAIT_SECONDS = 60


def _started(event: WebhookEvent) -> None:
    with Path(os.environ["FAULTS_STARTS"]).open("a") as starts:
        starts.write(f"{event.event_id}\n")


@dispatch.handles("test.faults.counted")
def counted(event: WebhookEvent) -> None:
    _started(event)
    AuditEvent.objects.create(action=PROCESSED, target=event.event_id)


@dispatch.handles("test.faults.blocking")
def blocking(event: WebhookEvent) -> None:
    """Half its work first (committed at once: handlers run with no transaction open, and this
    half is idempotent, as every handler's writes are), then waits for the gate, then the rest."""
    _started(event)
    AuditEvent.objects.get_or_create(action=HALF_DONE, target=event.event_id)
    gate = Path(os.environ["FAULTS_GATE"])
    deadline = time.monotonic() + GATE_WAIT_SECONDS
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    AuditEvent.objects.create(action=PROCESSED, target=event.event_id)


if __name__ == "__main__":
    if timeout := os.environ.get("FAULTS_VISIBILITY_TIMEOUT"):
        app.conf.broker_transport_options = {
            **app.conf.broker_transport_options,
            "visibility_timeout": float(timeout),
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
        }
    app.worker_main(
        [
            "worker",
            "--pool=solo",
            "--loglevel=INFO",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "--hostname=faults@%h",
        ]
    )
