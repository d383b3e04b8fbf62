"""Mounted at the root of the site (config/urls.py: `path("", include("analytics.urls"))`)."""

from django.urls import path

from analytics import views

urlpatterns = [
    path("o/<uuid:org_id>/usage/", views.org_usage, name="org_usage"),
    path("o/<uuid:org_id>/usage/export.csv", views.org_usage_csv, name="org_usage_csv"),
    path(
        "o/<uuid:org_id>/usage/visibility/",
        views.org_usage_visibility,
        name="org_usage_visibility",
    ),
    path("profile/usage/", views.personal_usage, name="personal_usage"),
    path("profile/usage/export.csv", views.personal_usage_csv, name="personal_usage_csv"),
]
