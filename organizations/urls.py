from django.urls import path

from organizations import views

urlpatterns = [
    path("profile/switch/", views.profile_switch, name="profile_switch"),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation_accept"),
    path("o/new/", views.organization_create, name="org_create"),
    path("o/<uuid:org_id>/members/", views.members, name="org_members"),
    path("o/<uuid:org_id>/members/invite/", views.invite, name="org_invite"),
    path(
        "o/<uuid:org_id>/members/<int:membership_id>/role/",
        views.member_role,
        name="org_member_role",
    ),
    path(
        "o/<uuid:org_id>/members/<int:membership_id>/remove/",
        views.member_remove,
        name="org_member_remove",
    ),
    path(
        "o/<uuid:org_id>/invitations/<int:invitation_id>/resend/",
        views.invitation_resend,
        name="org_invitation_resend",
    ),
    path(
        "o/<uuid:org_id>/invitations/<int:invitation_id>/revoke/",
        views.invitation_revoke,
        name="org_invitation_revoke",
    ),
    path("o/<uuid:org_id>/leave/", views.leave, name="org_leave"),
    path("o/<uuid:org_id>/settings/", views.settings_tab, name="org_settings"),
]
