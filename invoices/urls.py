from django.urls import path

from invoices import views

urlpatterns = [
    path("", views.invoices_tab, name="org_invoices"),
    path("export.csv", views.invoices_csv, name="org_invoices_csv"),
    path("<int:invoice_id>/", views.invoice_detail, name="org_invoice"),
    path("<int:invoice_id>/pdf/", views.invoice_pdf, name="org_invoice_pdf"),
    path("billing/", views.billing, name="org_billing"),
    path("payment-method/", views.payment_method, name="org_payment_method"),
    path("pay/", views.pay_now, name="org_pay_now"),
]
