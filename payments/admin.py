import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from organizations.services import audit_record
from payments.dispatch import webhook_event_replay
from payments.models import WebhookEvent
from payments.sandbox.models import (
    SandboxCheckoutSession,
    SandboxCustomer,
    SandboxEvent,
    SandboxInvoice,
    SandboxSubscription,
)


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    """The webhook inbox. "Needs a person" (the status filter) lists the dead letters: events that
    failed with an error waiting cannot heal and are no longer retried; each shows its error, and
    "Replay" runs it again once the cause is fixed."""

    list_display = (
        "event_id",
        "type",
        "status",
        "attempts",
        "deliveries",
        "created",
        "received_at",
        "processed_at",
        "error",
    )
    list_filter = ("status", "type", "livemode")
    search_fields = ("event_id", "type")
    date_hierarchy = "received_at"
    actions = ("replay",)
    readonly_fields = [f.name for f in WebhookEvent._meta.fields if f.name != "payload"] + [
        "pretty_payload"
    ]
    exclude = ("payload",)

    @admin.display(description="Payload")
    def pretty_payload(self, obj: WebhookEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2))

    @admin.display(description="Error")
    def error(self, obj: WebhookEvent) -> str:
        """The last line of the last error (the exception and its message)."""
        lines = obj.last_error.strip().splitlines()
        return lines[-1][:200] if lines else ""

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        waiting = WebhookEvent.objects.filter(status=WebhookEvent.Status.NEEDS_PERSON).count()
        if waiting and request.GET.get("status__exact") != WebhookEvent.Status.NEEDS_PERSON:
            link = f"?status__exact={WebhookEvent.Status.NEEDS_PERSON}"
            self.message_user(
                request,
                format_html(
                    '{} event(s) <a href="{}">need a person</a>: no longer retried.',
                    waiting,
                    link,
                ),
                messages.WARNING,
            )
        return super().changelist_view(request, extra_context)

    @admin.action(description="Replay the selected events (handlers are idempotent)")
    def replay(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> None:
        results = []
        for event in queryset:
            result = webhook_event_replay(event=event)
            audit_record(
                organization=None,
                actor=request.user,  # type: ignore[arg-type]
                action="webhook.replay",
                target=event.event_id,
                result=result,
            )
            results.append(f"{event.event_id}: {result}")
        self.message_user(request, "Replayed " + "; ".join(results), messages.SUCCESS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(SandboxCustomer)
class SandboxCustomerAdmin(ReadOnlyAdmin):
    list_display = ("id", "name", "email", "default_payment_method", "created")
    search_fields = ("id", "name", "email")


@admin.register(SandboxSubscription)
class SandboxSubscriptionAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "customer",
        "status",
        "quantity",
        "pending_quantity",
        "current_period_end",
        "cancel_at_period_end",
    )
    list_filter = ("status", "cancel_at_period_end")
    search_fields = ("id", "customer__id", "customer__name")


@admin.register(SandboxInvoice)
class SandboxInvoiceAdmin(ReadOnlyAdmin):
    list_display = (
        "number",
        "id",
        "customer",
        "billing_reason",
        "status",
        "amount_due",
        "attempt_count",
        "created",
    )
    list_filter = ("status", "billing_reason")
    search_fields = ("id", "number", "customer__id", "customer__name")


@admin.register(SandboxCheckoutSession)
class SandboxCheckoutSessionAdmin(ReadOnlyAdmin):
    list_display = ("id", "customer", "mode", "status", "payment_status", "amount", "created")
    list_filter = ("mode", "status")
    search_fields = ("id", "customer__id")


@admin.register(SandboxEvent)
class SandboxEventAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "type",
        "created",
        "delivered_at",
        "next_attempt_at",
        "attempts",
        "deliveries",
        "copies",
        "last_response",
    )
    list_filter = ("type",)
    search_fields = ("id", "type")
