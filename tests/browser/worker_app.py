"""The Celery app of the browser tests' worker: the project's own app, sending to and consuming
from the queue that the tests chose (KB_BROWSER_QUEUE), so that no other worker on the same Redis
(a `make run` in another terminal) takes their tasks, and theirs none of its. When the suite runs
at another instant (`--start-at`), the worker's clock runs with the tests'
(KB_TEST_CLOCK_OFFSET)."""

import os
import time
from datetime import UTC, datetime

import time_machine

from config.celery import app

app.conf.task_default_queue = os.environ["KB_BROWSER_QUEUE"]

if offset := os.environ.get("KB_TEST_CLOCK_OFFSET"):
    time_machine.travel(
        datetime.fromtimestamp(time.time() + float(offset), tz=UTC), tick=True
    ).start()

__all__ = ["app"]
