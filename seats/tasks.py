from celery import shared_task

from seats import services


@shared_task
def seat_subscriptions_resync() -> int:
    """Daily reconciliation: every seat subscription re-read from the gateway."""
    return services.seat_subscriptions_resync()
