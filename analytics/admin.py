from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from analytics.models import DailyUsage, UsageSettings


@admin.register(DailyUsage)
class DailyUsageAdmin(admin.ModelAdmin):
    """Read-only: rollups are derived from the usage records and written only with them."""

    list_display = ("day", "account", "user_id", "provider", "model", "project", "requests", "cost")
    list_filter = ("provider",)
    search_fields = ("=account__id", "model", "project")
    date_hierarchy = "day"
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(UsageSettings)
class UsageSettingsAdmin(admin.ModelAdmin):
    list_display = ("organization", "members_see_totals", "updated_at", "updated_by")
    raw_id_fields = ("organization", "updated_by")
