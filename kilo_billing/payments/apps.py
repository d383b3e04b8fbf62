from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "kilo_billing.payments"
    label = "payments"
