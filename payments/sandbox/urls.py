from django.urls import path

from payments.sandbox import views

# Ids are Stripe-shaped (letters, digits, underscores): anything else is a 404 before any query.
urlpatterns = [
    path("checkout/<slug:session_id>/", views.checkout, name="sandbox_checkout"),
    path("payment-method/<str:token>/", views.payment_method, name="sandbox_payment_method"),
    path("portal/<str:token>/", views.portal, name="sandbox_portal"),
    path("invoices/<slug:invoice_id>/", views.invoice, name="sandbox_invoice"),
    path("invoices/<slug:invoice_id>/pdf", views.invoice_pdf, name="sandbox_invoice_pdf"),
    path("authenticate/<slug:payment_id>/", views.authenticate, name="sandbox_authenticate"),
]
