"""Beat tasks: thin, idempotent, the same service code as `manage.py billing_jobs`."""

from celery import shared_task

from analytics import services


@shared_task
def usage_weeks_sum() -> dict[str, int]:
    return services.usage_weeks_sum()
