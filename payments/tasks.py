from celery import shared_task

from payments import dispatch


@shared_task
def webhook_event_process(webhook_event_id: int) -> str | None:
    return dispatch.webhook_event_process(webhook_event_id=webhook_event_id)


@shared_task
def webhook_events_retry() -> int:
    return dispatch.webhook_events_retry()


# The sandbox's tasks live in a sub-package that Celery's autodiscovery does not visit.
from payments.sandbox import tasks as sandbox_tasks  # noqa: E402

__all__ = ["sandbox_tasks", "webhook_event_process", "webhook_events_retry"]
