from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from organizations.models import AuditEvent, Invitation, Membership, Organization


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ("user",)


# What the failed-payment lifecycle keeps on an organization: read-only in every admin, moved
# only by its services (the actions on the lifecycle page, dunning/admin.py).
LIFECYCLE_FIELDS = (
    "billing_state",
    "billing_state_since",
    "grace_ends_at",
    "grace_reminder_sent_at",
    "suspended_at",
    "suspended_by_staff",
    "suspension_reason",
    "retention_scheduled",
    "deletion_notice_days",
    "deleted_at",
)


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("name", "id", "billing_state", "created_at")
    list_filter = ("billing_state",)
    readonly_fields = ("credits", *LIFECYCLE_FIELDS)
    # Staff often know a customer by a person's email: find the organizations they belong to.
    search_fields = ("name", "id", "memberships__user__email")
    date_hierarchy = "created_at"
    inlines = (MembershipInline,)

    @admin.display(description="Credits")
    def credits(self, obj: Organization) -> str:
        # By URL name: the credits app sits above organizations and is not imported here.
        url = reverse("admin:credits_creditaccount_grant_organization", args=[obj.pk])
        return format_html('<a href="{}">Grant or adjust this organization\'s credits…</a>', url)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "organization", "role", "created_at")
    list_filter = ("role",)
    search_fields = ("user__email", "organization__name")
    list_select_related = ("user", "organization")
    raw_id_fields = ("user", "organization")


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ("email", "organization", "role", "status", "created_at", "expires_at")
    list_filter = ("role", "accepted_at", "revoked_at")
    search_fields = ("email", "organization__name")
    list_select_related = ("organization",)
    raw_id_fields = ("organization", "invited_by", "accepted_by")
    exclude = ("token_hash",)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the audit trail is written by services, never by hand."""

    list_display = ("created_at", "organization", "actor", "action", "target")
    list_filter = ("action",)
    search_fields = ("action", "target", "actor__email", "organization__name")
    list_select_related = ("organization", "actor")
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
