from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from organizations.models import AuditEvent, Invitation, Membership, Organization


class TeamReadOnly:
    """Roles and memberships change only through the team's services (organizations.services),
    which keep the rules the admin's forms would not: the last owner stays, every change is an
    audit event. Staff read the team here; owners and admins change it on the Members page."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MembershipInline(TeamReadOnly, admin.TabularInline):
    model = Membership
    fields = ("user", "role", "created_at")
    readonly_fields = fields
    extra = 0


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
# What a suspension leaves behind; shown only while the organization is suspended, so that an
# active organization shows no stale reason (or retention countdown) from a lifted suspension.
SUSPENSION_FIELDS = (
    "suspended_at",
    "suspended_by_staff",
    "suspension_reason",
    "retention_scheduled",
    "deletion_notice_days",
)


def lifecycle_fields(organization: Organization | None) -> tuple[str, ...]:
    if organization is not None and organization.billing_state == "suspended":
        return LIFECYCLE_FIELDS
    return tuple(name for name in LIFECYCLE_FIELDS if name not in SUSPENSION_FIELDS)


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("name", "id", "billing_state", "created_at")
    list_filter = ("billing_state",)
    # Staff often know a customer by a person's email: find the organizations they belong to.
    search_fields = ("name", "id", "memberships__user__email")
    date_hierarchy = "created_at"
    inlines = (MembershipInline,)

    def get_fields(self, request: HttpRequest, obj: Organization | None = None) -> tuple[str, ...]:
        return ("name", "created_at", "credits", "lifecycle", *lifecycle_fields(obj))

    def get_readonly_fields(
        self, request: HttpRequest, obj: Organization | None = None
    ) -> list[str]:
        # The creation date is a fact, not a setting.
        return ["created_at", "credits", "lifecycle", *lifecycle_fields(obj)]

    # By URL name below: credits and dunning sit above organizations and are not imported here.
    @admin.display(description="Credits")
    def credits(self, obj: Organization) -> str:
        if obj.pk is None:
            return "—"
        url = reverse("admin:credits_creditaccount_grant_organization", args=[obj.pk])
        return format_html('<a href="{}">Grant or adjust this organization\'s credits…</a>', url)

    @admin.display(description="Billing lifecycle")
    def lifecycle(self, obj: Organization) -> str:
        if obj.pk is None:
            return "—"
        timeline = reverse("admin:dunning_organizationlifecycle_change", args=[obj.pk])
        actions = reverse("admin:dunning_organizationlifecycle_changelist") + f"?q={obj.pk}"
        return format_html(
            '<a href="{}">State and timeline…</a> · <a href="{}">Extend grace, suspend or '
            "restore…</a>",
            timeline,
            actions,
        )


@admin.register(Membership)
class MembershipAdmin(TeamReadOnly, admin.ModelAdmin):
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
