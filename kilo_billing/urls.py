from django.contrib import admin
from django.urls import include, path

from kilo_billing.health import healthz
from organizations.views import home

admin.site.site_header = "Kilo Billing staff"
admin.site.site_title = "Kilo Billing staff"

urlpatterns = [
    path("", home, name="home"),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("", include("kilo_billing.payments.urls")),
    path("", include("organizations.urls")),
    path("o/<uuid:org_id>/credits/", include("credits.urls")),
    path("o/<uuid:org_id>/seats/", include("seats.urls")),
    path("o/<uuid:org_id>/invoices/", include("invoices.urls")),
]
