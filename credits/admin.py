import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from billing.templatetags.money import cents
from credits.exceptions import RefundRefused
from credits.forms import parse_dollars
from credits.models import (
    ApiToken,
    CreditAccount,
    LedgerEntry,
    ModelPrice,
    Purchase,
    PurchaseReversal,
    UsageRecord,
)
from credits.services import (
    REFUND_REASONS,
    credits_grant,
    purchase_refund,
    purchase_refund_terms,
)
from payments.gateway import GatewayError


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


class DisputedFilter(admin.SimpleListFilter):
    """Accounts whose purchases were charged back: a dispute still open, or lost."""

    title = "disputes"
    parameter_name = "disputed"
    OPEN = ("needs_response", "under_review", "appeal_needs_response", "appeal_under_review")

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("open", "A dispute open"),
            ("lost", "A dispute lost"),
            ("any", "Ever disputed"),
            ("owes", "Owes money"),
        ]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[CreditAccount]
    ) -> QuerySet[CreditAccount]:
        disputes = PurchaseReversal.objects.filter(
            kind=PurchaseReversal.Kind.DISPUTE, purchase__account=OuterRef("pk")
        )
        value = self.value()
        if value == "open":
            return queryset.filter(Exists(disputes.filter(status__in=self.OPEN)))
        if value == "lost":
            return queryset.filter(Exists(disputes.filter(status="lost")))
        if value == "any":
            return queryset.filter(Exists(disputes))
        if value == "owes":
            return queryset.filter(owed__gt=0)
        return queryset


@admin.register(CreditAccount)
class CreditAccountAdmin(admin.ModelAdmin):
    list_display = (
        "pk",
        "organization",
        "user",
        "balance",
        "owed",
        "auto_topup_enabled",
        "low_balance_threshold",
    )
    search_fields = ("organization__name", "user__email")
    list_filter = (DisputedFilter, "auto_topup_enabled")
    list_select_related = ("organization", "user")
    readonly_fields = (
        "organization",
        "user",
        "balance",
        "owed",
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


class RefundForm(forms.Form):
    amount = forms.CharField(label="Amount to refund (USD)", max_length=20)
    reason = forms.ChoiceField(choices=list(REFUND_REASONS.items()))
    note = forms.CharField(
        label="Why (goes to the ledger, the audit log and the gateway)",
        max_length=300,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    beyond_unspent = forms.BooleanField(
        required=False,
        label="Refund more than the unspent part: the account will owe the difference",
    )
    key = forms.UUIDField(widget=forms.HiddenInput)

    def clean_amount(self) -> int:
        return parse_dollars(self.cleaned_data["amount"])


class ReversalInline(admin.TabularInline):
    model = PurchaseReversal
    fields = ("created_at", "kind", "gateway_id", "amount_cents", "status", "reason", "actor")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Purchase)
class PurchaseAdmin(ReadOnly):
    list_display = (
        "created_at",
        "account",
        "kind",
        "amount_cents",
        "status",
        "invoice_number",
        "refund_link",
    )
    list_filter = ("status", "kind")
    search_fields = (
        "gateway_invoice_id",
        "invoice_number",
        "checkout_session_id",
        "idempotency_key",
    )
    list_select_related = ("account",)
    inlines = (ReversalInline,)

    @admin.display(description="Refund")
    def refund_link(self, obj: Purchase) -> str:
        if obj.status != Purchase.Status.PAID:
            return ""
        url = reverse("admin:credits_purchase_refund", args=[obj.pk])
        return format_html('<a href="{}">Refund…</a>', url)

    def get_urls(self) -> list[URLPattern]:
        refund = path(
            "<int:purchase_id>/refund/",
            self.admin_site.admin_view(self.refund_view),
            name="credits_purchase_refund",
        )
        return [refund, *super().get_urls()]

    def refund_view(self, request: HttpRequest, purchase_id: int) -> HttpResponse:
        """Staff refund, full or partial, with a reason, after a confirmation page that states
        what goes back to the card and what the balance becomes."""
        if not request.user.has_perm("credits.change_creditaccount"):
            messages.error(request, "Refunds need the permission to change credit accounts.")
            return redirect(reverse("admin:credits_purchase_changelist"))
        purchase = get_object_or_404(
            Purchase.objects.select_related("account__organization", "account__user"),
            pk=purchase_id,
        )
        terms = purchase_refund_terms(purchase=purchase)
        initial = {
            "amount": f"{terms.unspent / 100:.2f}",
            "reason": "requested_by_customer",
            "key": uuid.uuid4(),
        }
        form = RefundForm(request.POST or None, initial=initial)
        confirming = False
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            if "confirm" in request.POST:
                try:
                    refund = purchase_refund(
                        actor=request.user,  # type: ignore[arg-type]
                        purchase=purchase,
                        amount_cents=data["amount"],
                        reason=data["reason"],
                        note=data["note"],
                        idempotency_key=str(data["key"]),
                        beyond_unspent=data["beyond_unspent"],
                    )
                except (RefundRefused, GatewayError) as refused:
                    form.add_error(None, getattr(refused, "message", str(refused)))
                else:
                    messages.success(
                        request,
                        f"Refunded {cents(refund.amount)} of purchase {purchase.pk} ({refund.id}).",
                    )
                    return redirect(reverse("admin:credits_purchase_change", args=[purchase.pk]))
            elif data["amount"] > terms.refundable:
                form.add_error(
                    "amount", f"At most {cents(terms.refundable)} can still be refunded."
                )
            elif data["amount"] > terms.unspent and not data["beyond_unspent"]:
                form.add_error(
                    "amount",
                    f"Only {cents(terms.unspent)} is unspent; tick the box below to refund more.",
                )
            else:
                confirming = True
        account = purchase.account
        amount = form.cleaned_data.get("amount", 0) if confirming else 0
        context = {
            **self.admin_site.each_context(request),
            "title": f"Refund purchase {purchase.pk}",
            "purchase": purchase,
            "account": account,
            "terms": terms,
            "form": form,
            "confirming": confirming,
            "amount_cents": amount,
            "balance_after": account.balance - amount * 10_000,
            "reason_label": REFUND_REASONS.get(form.cleaned_data.get("reason", ""), "")
            if confirming
            else "",
            "opts": self.model._meta,
        }
        return render(request, "admin/credits/refund.html", context, status=200)


@admin.register(PurchaseReversal)
class PurchaseReversalAdmin(ReadOnly):
    list_display = ("created_at", "purchase", "kind", "gateway_id", "amount_cents", "status")
    list_filter = ("kind", "status")
    search_fields = ("gateway_id", "purchase__invoice_number", "purchase__gateway_invoice_id")
    list_select_related = ("purchase",)


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
