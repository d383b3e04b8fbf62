"""Mounted at the root of the site (config/urls.py: `path("", include("analytics.urls"))`)."""

from django.urls import path

from analytics import receipts, views

urlpatterns = [
    path("o/<uuid:org_id>/usage/", views.org_usage, name="org_usage"),
    path("o/<uuid:org_id>/usage/export.csv", views.org_usage_csv, name="org_usage_csv"),
    path(
        "o/<uuid:org_id>/usage/visibility/",
        views.org_usage_visibility,
        name="org_usage_visibility",
    ),
    path("o/<uuid:org_id>/usage/requests/", receipts.org_requests, name="org_usage_requests"),
    path(
        "o/<uuid:org_id>/usage/requests/<int:entry_id>/",
        receipts.org_receipt,
        name="org_usage_receipt",
    ),
    path("profile/usage/", views.personal_usage, name="personal_usage"),
    path("profile/usage/requests/", receipts.personal_requests, name="personal_usage_requests"),
    path(
        "profile/usage/requests/<int:entry_id>/",
        receipts.personal_receipt,
        name="personal_usage_receipt",
    ),
    path("profile/usage/export.csv", views.personal_usage_csv, name="personal_usage_csv"),
]
