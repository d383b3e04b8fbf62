"""The project's URLs with the analytics views in front, so that these tests reach them whether
or not `org_usage` in organizations/urls.py points at them yet (once it does, this changes
nothing: the same paths lead to the same views)."""

from analytics.urls import urlpatterns as analytics_urlpatterns
from kilo_billing.urls import urlpatterns as project_urlpatterns

urlpatterns = [*analytics_urlpatterns, *project_urlpatterns]
