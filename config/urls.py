from django.contrib import admin
from django.urls import include, path

from accounts.forms import StaffLoginForm
from config.health import healthz
from credits import views as credits_views
from credits.api import api
from credits.urls import personal_urlpatterns
from organizations.views import home

admin.site.site_header = "Kilo Billing staff"
admin.site.login_form = StaffLoginForm
admin.site.site_title = "Kilo Billing staff"

urlpatterns = [
    path("", home, name="home"),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("", include("payments.urls")),
    path("", include("dashboard.urls")),
    path("", include("organizations.urls")),
    path("", include("analytics.urls")),
    path("o/<uuid:org_id>/credits/", include("credits.urls")),
    path("profile/credits/", include(personal_urlpatterns)),
    path("profile/tokens/", credits_views.tokens, name="personal_tokens"),
    path(
        "o/<uuid:org_id>/members/budgets/",
        credits_views.member_budgets,
        name="org_member_budgets",
    ),
    path(
        "profile/tokens/<int:token_id>/revoke/",
        credits_views.token_revoke,
        name="personal_token_revoke",
    ),
    path("api/", api.urls),
    path("o/<uuid:org_id>/seats/", include("seats.urls")),
    path("o/<uuid:org_id>/invoices/", include("invoices.urls")),
    path("o/<uuid:org_id>/", include("dunning.urls")),
]
