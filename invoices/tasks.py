"""Beat tasks: thin, idempotent, the same service code as `manage.py billing_jobs`."""

from celery import shared_task

from invoices import lifecycle


@shared_task
def dunning_sweep() -> dict[str, int]:
    return lifecycle.dunning_sweep()


@shared_task
def retention_sweep() -> dict[str, int]:
    return lifecycle.retention_sweep()
