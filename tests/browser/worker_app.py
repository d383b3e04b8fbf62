"""The Celery app of the browser tests' worker: the project's own app, sending to and consuming
from the queue that the tests chose (KB_BROWSER_QUEUE), so that no other worker on the same Redis
(a `make run` in another terminal) takes their tasks, and theirs none of its."""

import os

from config.celery import app

app.conf.task_default_queue = os.environ["KB_BROWSER_QUEUE"]

__all__ = ["app"]
