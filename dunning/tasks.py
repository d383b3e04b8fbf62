"""Beat tasks: thin, idempotent, the same service code as `manage.py billing_jobs`."""

from celery import shared_task

from dunning import sweeps


@shared_task
def dunning_sweep() -> dict[str, int]:
    return sweeps.dunning_sweep()


@shared_task
def retention_sweep() -> dict[str, int]:
    return sweeps.retention_sweep()
