from django.apps import AppConfig


class InvoicesConfig(AppConfig):
    name = "invoices"

    def ready(self) -> None:
        from invoices import webhooks  # noqa: F401 - registers the invoice.* handlers
