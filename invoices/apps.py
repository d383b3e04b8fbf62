from django.apps import AppConfig


class InvoicesConfig(AppConfig):
    name = "invoices"

    def ready(self) -> None:
        from invoices import receivers, webhooks  # noqa: F401, PLC0415 - event handlers and receivers
