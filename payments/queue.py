import logging
from typing import Any

from celery import Task
from django.db import transaction

logger = logging.getLogger(__name__)


def enqueue_after_commit(task: Task, *args: Any) -> None:
    """Queue a task once the transaction commits. If the broker is down the work is not lost:
    every queued job here is also picked up by a beat sweep over the database."""

    def send() -> None:
        try:
            task.apply_async(args=args, retry=False)
        except Exception:
            logger.warning("could not queue %s%r; the periodic sweep will run it", task.name, args)

    transaction.on_commit(send)
