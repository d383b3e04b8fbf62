from django.apps import AppConfig


class CreditsConfig(AppConfig):
    name = "credits"

    def ready(self) -> None:
        from credits import webhooks  # noqa: F401 - registers the webhook handlers
