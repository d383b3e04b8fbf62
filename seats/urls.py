from django.urls import path

from seats import views

urlpatterns = [
    path("", views.seats_tab, name="org_seats"),
    path("buy/", views.seats_buy, name="org_seats_buy"),
    path("add/", views.seats_add, name="org_seats_add"),
    path("remove/", views.seats_remove, name="org_seats_remove"),
    path("cancel/", views.seats_cancel, name="org_seats_cancel"),
    path("resume/", views.seats_resume, name="org_seats_resume"),
]
