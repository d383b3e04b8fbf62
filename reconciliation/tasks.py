"""The reconciler's periodic jobs (settings.PERIODIC_JOBS: beat and `billing_jobs`)."""

from celery import shared_task

from reconciliation.services import reconcile


@shared_task
def reconcile_recent() -> dict[str, int]:
    """Every few minutes: the payers with gateway activity since the last run."""
    return reconcile().summary()


@shared_task
def reconcile_full() -> dict[str, int]:
    """Daily: every payer with a gateway customer, and every credit account."""
    return reconcile(full=True).summary()
