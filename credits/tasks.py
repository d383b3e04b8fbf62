from celery import shared_task

from credits import services


@shared_task
def auto_topup_run(account_id: int) -> str:
    return services.auto_topup_run(account_id=account_id)


@shared_task
def auto_topup_sweep() -> int:
    return services.auto_topup_sweep()


@shared_task
def holds_expire() -> int:
    """Every minute: holds past their expiry are freed, nothing debited."""
    return services.holds_expire()
