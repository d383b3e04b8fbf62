from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import URLPattern, path, reverse

from credits.forms import parse_dollars
from credits.models import ApiToken, CreditAccount, LedgerEntry, ModelPrice, Purchase, UsageRecord
from credits.services import credits_grant


class GrantForm(forms.Form):
    amount = forms.CharField(label="Amount (USD; negative for a debit adjustment)", max_length=20)
    reason = forms.CharField(max_length=300, widget=forms.Textarea(attrs={"rows": 2}))

    def clean_amount(self) -> int:
        raw = self.cleaned_data["amount"].strip()
        negative = raw.startswith("-")
        cents = parse_dollars(raw.lstrip("-"))
        return (-cents if negative else cents) * 10_000


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(CreditAccount)
class CreditAccountAdmin(admin.ModelAdmin):
    list_display = (
        "pk",
        "organization",
        "user",
        "balance",
        "auto_topup_enabled",
        "low_balance_threshold",
    )
    search_fields = ("organization__name", "user__email")
    list_filter = ("auto_topup_enabled",)
    list_select_related = ("organization", "user")
    readonly_fields = (
        "organization",
        "user",
        "balance",
        "created_at",
        "auto_topup_started_at",
        "low_balance_alerted",
    )

    def save_model(self, request: HttpRequest, obj: CreditAccount, form: Any, change: bool) -> None:
        # Write only what staff changed: a full save would write back the balance as it was when
        # the form loaded, undoing every debit since.
        if change:
            obj.save(update_fields=[name for name in form.changed_data if name != "balance"])
        else:
            super().save_model(request, obj, form, change)

    def get_urls(self) -> list[URLPattern]:
        grant = path(
            "<int:account_id>/grant/",
            self.admin_site.admin_view(self.grant_view),
            name="credits_creditaccount_grant",
        )
        return [grant, *super().get_urls()]

    def grant_view(self, request: HttpRequest, account_id: int) -> HttpResponse:
        """Staff grant or adjustment, with the staff member and a reason in the ledger."""
        account = get_object_or_404(CreditAccount, pk=account_id)
        form = GrantForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                credits_grant(
                    actor=request.user,  # type: ignore[arg-type]
                    account=account,
                    amount=form.cleaned_data["amount"],
                    reason=form.cleaned_data["reason"],
                )
            except Exception as error:
                messages.error(request, f"Not applied: {error.__class__.__name__} {error}")
            else:
                messages.success(request, "Applied.")
                return redirect(reverse("admin:credits_creditaccount_change", args=[account.pk]))
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "account": account,
            "title": "Grant or adjust credits",
        }
        return render(request, "admin/credits/grant.html", context)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnly):
    list_display = ("created_at", "account", "kind", "amount", "idempotency_key", "actor", "reason")
    list_filter = ("kind",)
    search_fields = (
        "idempotency_key",
        "reason",
        "account__organization__name",
        "account__user__email",
    )
    list_select_related = ("account", "actor")
    date_hierarchy = "created_at"


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnly):
    list_display = ("created_at", "account", "user", "provider", "model", "project", "cost")
    list_filter = ("provider",)
    search_fields = ("request_id", "model", "project", "user__email")
    list_select_related = ("account", "user")
    date_hierarchy = "created_at"


@admin.register(Purchase)
class PurchaseAdmin(ReadOnly):
    list_display = ("created_at", "account", "kind", "amount_cents", "status", "gateway_invoice_id")
    list_filter = ("status", "kind")
    search_fields = ("gateway_invoice_id", "checkout_session_id", "idempotency_key")
    list_select_related = ("account",)


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = (
        "provider",
        "model_id",
        "name",
        "input_price",
        "output_price",
        "cache_read_price",
        "cache_write_price",
        "effective_from",
    )
    list_filter = ("provider",)
    search_fields = ("model_id", "name")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "prefix", "created_at", "last_used_at", "revoked_at")
    search_fields = ("name", "user__email", "prefix")
    list_select_related = ("user",)
    exclude = ("token_hash",)
    readonly_fields = ("user", "prefix", "created_at", "last_used_at")
