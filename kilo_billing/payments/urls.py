from django.urls import include, path

from kilo_billing.payments import views

urlpatterns = [
    path("stripe/webhook/", views.stripe_webhook, name="stripe_webhook"),
    path("sandbox/", include("kilo_billing.payments.sandbox.urls")),
]
