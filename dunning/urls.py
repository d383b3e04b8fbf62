from django.urls import path

from dunning import views

# Mounted under /o/<org_id>/.
urlpatterns = [
    path("invoices/status/", views.account_status, name="org_account_status"),
    path("delete/", views.organization_delete, name="org_delete"),
]
