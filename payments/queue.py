import logging
from typing import Any

from celery import Task, current_app
from django.db import transaction

logger = logging.getLogger(__name__)


def enqueue_after_commit(task: Task | str, *args: Any) -> None:
    """Queue a task once the transaction commits. If the broker is down the work is not lost:
    every queued job here is also picked up by a beat sweep over the database.

    A task may be named ("credits.tasks.auto_topup_run") by a module that its tasks module
    imports, so that the two do not import each other; each app's `ready` imports its tasks, so
    the name is always registered (and runs inline where tasks are eager, as in tests)."""

    def send() -> None:
        name = task if isinstance(task, str) else task.name
        try:
            resolved = current_app.tasks[task] if isinstance(task, str) else task
            resolved.apply_async(args=args, retry=False)
        except Exception:
            logger.warning("could not queue %s%r; the periodic sweep will run it", name, args)

    transaction.on_commit(send)
