from celery import shared_task

from payments.factory import get_gateway
from payments.sandbox import delivery, engine


@shared_task
def sandbox_event_deliver(event_id: str) -> bool:
    return delivery.sandbox_event_deliver(event_id=event_id)


@shared_task
def sandbox_events_redeliver() -> int:
    return delivery.sandbox_events_redeliver()


@shared_task
def sandbox_tick() -> int:
    """Renewals, retries and expiries that the sandbox clock says are due (sandbox mode only)."""
    if get_gateway().name != "sandbox":
        return 0
    return engine.tick()
