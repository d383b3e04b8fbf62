from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"
    label = "payments"

    def ready(self) -> None:
        # Registers the deploy check, and the tasks that modules enqueue by name.
        from payments import checks, tasks  # noqa: F401, PLC0415
