"""Every periodic billing job, once each: what `manage.py billing_jobs` runs and what the beat
tasks call. Other apps append theirs here (auto top-up, reconciliation)."""

from collections.abc import Callable

from invoices import lifecycle
from payments.dispatch import webhook_events_retry

Job = tuple[str, Callable[[], object]]

JOBS: list[Job] = [
    ("webhook_retry", webhook_events_retry),
    ("dunning_sweep", lifecycle.dunning_sweep),
    ("retention_sweep", lifecycle.retention_sweep),
]
