from django.urls import path

from credits import views

urlpatterns = [
    path("", views.credits_tab, name="org_credits"),
]
