from django.urls import path

from credits import views

# Mounted twice: under /o/<org_id>/credits/ (names org_…) and /profile/credits/ (personal_…).
urlpatterns = [
    path("", views.credits_page, name="org_credits"),
    path("buy/", views.buy, name="org_buy"),
    path("confirm/", views.confirm, name="org_confirm"),
    path("purchases/<int:purchase_id>/", views.purchase, name="org_purchase"),
    path("auto-top-up/", views.auto_topup, name="org_auto_topup"),
    path("low-balance/", views.low_balance, name="org_low_balance"),
    path("daily-limit/", views.daily_limit, name="org_daily_limit"),
]

personal_urlpatterns = [
    path("", views.credits_page, name="personal_credits"),
    path("buy/", views.buy, name="personal_buy"),
    path("confirm/", views.confirm, name="personal_confirm"),
    path("purchases/<int:purchase_id>/", views.purchase, name="personal_purchase"),
    path("auto-top-up/", views.auto_topup, name="personal_auto_topup"),
    path("low-balance/", views.low_balance, name="personal_low_balance"),
]
