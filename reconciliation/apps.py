from django.apps import AppConfig


class ReconciliationConfig(AppConfig):
    name = "reconciliation"
    verbose_name = "Reconciliation"

    def ready(self) -> None:
        # Registers the periodic tasks under the names settings.PERIODIC_JOBS gives them.
        from reconciliation import tasks  # noqa: F401, PLC0415
