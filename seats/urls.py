from django.urls import path

from seats import views

urlpatterns = [
    path("", views.seats_tab, name="org_seats"),
]
