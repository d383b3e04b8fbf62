from django.apps import AppConfig


class CreditsConfig(AppConfig):
    name = "credits"

    def ready(self) -> None:
        # Registers the webhook handlers, and the tasks that modules enqueue by name.
        from credits import tasks, webhooks  # noqa: F401, PLC0415
