from django.urls import path

from dashboard import views

urlpatterns = [
    path("profile/", views.personal_profile, name="personal_profile"),
    path("profile/invoices/", views.personal_invoices, name="personal_invoices"),
    path(
        "profile/closed/<uuid:closed_id>/",
        views.closed_organization,
        name="personal_closed_organization",
    ),
    path("o/<uuid:org_id>/", views.overview, name="org_overview"),
    path("o/<uuid:org_id>/audit/", views.audit_log, name="org_audit"),
]
