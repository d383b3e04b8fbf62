from django.urls import path

from invoices import views

urlpatterns = [
    path("", views.invoices_tab, name="org_invoices"),
]
