"""Staff's lifecycle section: every organization's billing state and timeline, and the actions —
extend grace, suspend now, restore — each asking for a reason that lands in the timeline and the
audit log."""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from accounts.models import User
from dunning import lifecycle
from dunning.exceptions import LifecycleError
from dunning.forms import ExtendGraceForm, LifecycleReasonForm, SuspendForm
from dunning.models import LifecycleTransition, OrganizationLifecycle
from invoices.admin import ReadOnlyMixin
from organizations.admin import lifecycle_fields


class TransitionInline(ReadOnlyMixin, admin.TabularInline):
    model = LifecycleTransition
    fields = ("created_at", "from_state", "to_state", "reason", "invoice", "actor")
    readonly_fields = fields
    ordering = ("-created_at", "-pk")
    extra = 0
    verbose_name_plural = "Timeline"


@admin.register(LifecycleTransition)
class LifecycleTransitionAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("created_at", "organization", "from_state", "to_state", "reason", "actor")
    list_filter = ("to_state",)
    search_fields = ("organization__name", "reason")
    list_select_related = ("organization", "actor")
    date_hierarchy = "created_at"


@admin.register(OrganizationLifecycle)
class OrganizationLifecycleAdmin(admin.ModelAdmin):
    list_display = ("name", "billing_state", "grace_ends_at", "suspended_at", "deletion_due_at")
    list_filter = ("billing_state",)
    # Staff often know a customer by a person's email: find the organizations they belong to.
    search_fields = ("name", "id", "memberships__user__email")
    inlines = (TransitionInline,)
    actions = ("extend_grace", "suspend_now", "restore")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("name", *lifecycle_fields(obj))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return self.get_fields(request, obj)

    @admin.display(description="Data deleted on")
    def deletion_due_at(self, obj: OrganizationLifecycle) -> Any:
        return obj.deletion_due_at

    def _run(
        self,
        request: HttpRequest,
        queryset: QuerySet[OrganizationLifecycle],
        *,
        action: str,
        title: str,
        explanation: str,
        form_class: type[LifecycleReasonForm],
        apply: Any,
    ) -> HttpResponse | None:
        """An action with an intermediate page asking for the reason; `apply(org, form)` moves
        one organization and returns what to report."""
        form = form_class(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            for organization in queryset:
                try:
                    outcome = apply(organization, form.cleaned_data)
                except LifecycleError as error:
                    self.message_user(request, error.message, messages.WARNING)
                else:
                    self.message_user(request, f"{organization.name}: {outcome}", messages.SUCCESS)
            return None
        return TemplateResponse(
            request,
            "dunning/admin_lifecycle_action.html",
            {
                **self.admin_site.each_context(request),
                "title": title,
                "explanation": explanation,
                "organizations": queryset,
                "form": form,
                "action": action,
                "opts": self.model._meta,
            },
        )

    @admin.action(description="Extend grace (asks for days and a reason)", permissions=["change"])
    def extend_grace(
        self, request: HttpRequest, queryset: QuerySet[OrganizationLifecycle]
    ) -> HttpResponse | None:
        def apply(organization: OrganizationLifecycle, data: dict[str, Any]) -> str:
            lifecycle.organization_grace_extend(
                organization=organization,
                actor=_staff(request),
                reason=data["reason"],
                days=data["days"],
            )
            return f"grace until {organization.grace_ends_at:%Y-%m-%d %H:%M} UTC"

        return self._run(
            request,
            queryset,
            action="extend_grace",
            title="Extend grace",
            explanation="Moves the grace deadline; a suspended organization is back in grace "
            "(and working) until the new deadline.",
            form_class=ExtendGraceForm,
            apply=apply,
        )

    @admin.action(description="Suspend now (asks for a reason)", permissions=["change"])
    def suspend_now(
        self, request: HttpRequest, queryset: QuerySet[OrganizationLifecycle]
    ) -> HttpResponse | None:
        def apply(organization: OrganizationLifecycle, data: dict[str, Any]) -> str:
            if not lifecycle.organization_suspend(
                organization=organization,
                reason=data["reason"],
                actor=_staff(request),
                retention=data["start_retention"],
            ):
                raise LifecycleError(
                    f"{organization.name} is {organization.get_billing_state_display().lower()}"
                    ": only an active organization or one in grace can be suspended."
                )
            if organization.deletion_due_at is not None:
                return f"suspended; data deleted on {organization.deletion_due_at:%Y-%m-%d} UTC"
            return "suspended; no deletion scheduled"

        return self._run(
            request,
            queryset,
            action="suspend_now",
            title="Suspend now",
            explanation="The API refuses, members lose the dashboard, billing stays open. The "
            'customer is told staff suspended it and why; "pay now" is offered only when '
            "something is overdue (paying it restores the organization). Data is deleted only "
            "if you start the retention countdown.",
            form_class=SuspendForm,
            apply=apply,
        )

    @admin.action(description="Restore (asks for a reason)", permissions=["change"])
    def restore(
        self, request: HttpRequest, queryset: QuerySet[OrganizationLifecycle]
    ) -> HttpResponse | None:
        def apply(organization: OrganizationLifecycle, data: dict[str, Any]) -> str:
            if not lifecycle.organization_restore(
                organization=organization, reason=data["reason"], actor=_staff(request)
            ):
                raise LifecycleError(
                    f"{organization.name} is {organization.get_billing_state_display().lower()}"
                    ": only an organization in grace or suspension can be restored."
                )
            return "active again"

        return self._run(
            request,
            queryset,
            action="restore",
            title="Restore",
            explanation="Back to active at once, whatever is still unpaid; the next failed "
            "payment attempt starts grace again.",
            form_class=LifecycleReasonForm,
            apply=apply,
        )


def _staff(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user
