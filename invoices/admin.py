"""Staff's billing section: billing profiles (resync from the gateway) and invoices (read-only).
The billing profile's admin is registered here, not in `billing`, because its resync action is
about invoices."""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from billing.models import BillingProfile
from invoices import services
from invoices.models import Invoice
from payments.gateway import GatewayError


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(BillingProfile)
class BillingProfileAdmin(admin.ModelAdmin):
    list_display = ("__str__", "organization", "user", "gateway_customer_id", "country")
    search_fields = ("company_name", "billing_email", "gateway_customer_id", "organization__name")
    list_select_related = ("organization", "user")
    raw_id_fields = ("organization", "user")
    readonly_fields = ("gateway_customer_id",)
    actions = ("resync_invoices",)

    @admin.action(description="Resync invoices from the payment gateway")
    def resync_invoices(self, request: HttpRequest, queryset: QuerySet[BillingProfile]) -> None:
        seen = 0
        for profile in queryset:
            try:
                seen += services.invoices_resync(profile=profile)
            except GatewayError as error:
                self.message_user(request, f"{profile}: {error}", messages.ERROR)
        self.message_user(request, f"Synced {seen} invoice(s).", messages.SUCCESS)


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "__str__",
        "billing_profile",
        "kind",
        "status",
        "amount_due",
        "amount_remaining",
        "attempt_count",
        "created",
    )
    list_filter = (
        "kind",
        "status",
        "dispute_status",
        "awaiting_authentication",
        "finalization_error_code",
    )
    search_fields = ("number", "gateway_id", "billing_profile__organization__name")
    list_select_related = ("billing_profile",)
    date_hierarchy = "created"
