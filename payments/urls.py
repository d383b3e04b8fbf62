from django.urls import include, path

from payments import views

urlpatterns = [
    path("stripe/webhook/", views.stripe_webhook, name="stripe_webhook"),
    path("sandbox/", include("payments.sandbox.urls")),
]
