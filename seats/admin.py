from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from payments.gateway import GatewayError
from seats.models import SeatChange, SeatPlan, SeatReceipt, SeatSubscription
from seats.services import seat_subscription_refresh


@admin.register(SeatPlan)
class SeatPlanAdmin(admin.ModelAdmin):
    """A new price applies to new purchases only; running subscriptions keep the price they
    were bought at (a gateway price never changes)."""

    list_display = ("name", "code", "unit_amount", "currency", "is_active", "position")
    list_editable = ("is_active", "position")
    readonly_fields = ("lookup_key",)


@admin.register(SeatSubscription)
class SeatSubscriptionAdmin(admin.ModelAdmin):
    list_display = (
        "organization",
        "plan",
        "quantity",
        "status",
        "current_period_end",
        "cancel_at_period_end",
        "synced_at",
    )
    list_filter = ("status", "cancel_at_period_end", "plan")
    search_fields = ("organization__name", "gateway_subscription_id", "gateway_customer_id")
    list_select_related = ("organization", "plan")
    # The gateway is the source of truth: staff resync instead of editing.
    readonly_fields = [field.name for field in SeatSubscription._meta.fields]
    actions = ("resync",)

    @admin.action(description="Resync from the payment gateway")
    def resync(self, request: HttpRequest, queryset: QuerySet[SeatSubscription]) -> None:
        done = 0
        for subscription in queryset:
            try:
                seat_subscription_refresh(subscription_id=subscription.gateway_subscription_id)
            except GatewayError as error:
                self.message_user(
                    request, f"{subscription.organization}: {error}", level=messages.ERROR
                )
            else:
                done += 1
        self.message_user(request, f"{done} subscription(s) resynced.")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(SeatChange)
class SeatChangeAdmin(admin.ModelAdmin):
    list_display = ("created_at", "organization", "kind", "seats", "status", "amount", "actor")
    list_filter = ("kind", "status")
    search_fields = ("organization__name", "idempotency_key", "gateway_invoice_id")
    list_select_related = ("organization", "actor")
    readonly_fields = [field.name for field in SeatChange._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(SeatReceipt)
class SeatReceiptAdmin(admin.ModelAdmin):
    list_display = ("created_at", "organization", "kind", "invoice_number", "amount", "quantity")
    list_filter = ("kind",)
    search_fields = ("organization__name", "gateway_invoice_id", "invoice_number")
    list_select_related = ("organization",)
    readonly_fields = [field.name for field in SeatReceipt._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
