import uuid
from typing import Any
from uuid import UUID

from django import forms
from django.contrib import admin, messages
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from billing.templatetags.money import cents as cents_filter
from billing.templatetags.money import microdollars as microdollars_filter
from credits.exceptions import GrantRefused, RefundRefused
from credits.forms import dollars_field
from credits.models import (
    ApiToken,
    CreditAccount,
    Hold,
    LedgerEntry,
    ModelPrice,
    Purchase,
    PurchaseReversal,
    UsageRecord,
)
from credits.money import MoneyError, cents_to_microdollars, parse_dollars
from credits.services import (
    GRANT_CONFIRMED_MAX,
    GRANT_PLAIN_MAX,
    REFUND_REASONS,
    account_for,
    credits_grant,
    purchase_refund,
    purchase_refund_terms,
    refund_check,
)
from organizations.models import Organization
from payments.gateway import GatewayError


def _dollars(microdollars: int | None) -> str:
    if microdollars is None:
        return "—"
    return format_html(
        "{} <small>({} µ$)</small>", microdollars_filter(microdollars), f"{microdollars:,}"
    )


class GrantForm(forms.Form):
    amount = forms.CharField(label="Amount (USD; negative for a debit adjustment)", max_length=20)
    reason = forms.CharField(max_length=300, widget=forms.Textarea(attrs={"rows": 2}))
    # Set by the confirmation page: the grant's idempotency key, so a double submit grants once.
    key = forms.UUIDField(required=False, widget=forms.HiddenInput)
    confirmed = forms.BooleanField(required=False, widget=forms.HiddenInput)
    large_confirmed = forms.BooleanField(
        required=False, label="I confirm this amount, which is over $100,000"
    )

    def clean_amount(self) -> int:
        try:
            cents = parse_dollars(
                self.cleaned_data["amount"],
                field="amount",
                max_dollars=GRANT_CONFIRMED_MAX // 1_000_000,
                signed=True,
            )
        except MoneyError as error:
            raise forms.ValidationError(error.message) from None
        return cents_to_microdollars(cents)


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


def _without_money_permission(request: HttpRequest) -> HttpResponse | None:
    """Grants, adjustments and refunds move money: staff need the permission to change credit
    accounts (the accounts' own pages stay read-only), not only access to the admin."""
    if request.user.has_perm("credits.change_creditaccount"):
        return None
    messages.error(
        request,
        "Granting, adjusting and refunding credits need the permission to change credit accounts.",
    )
    return redirect(reverse("admin:index"))


@admin.register(CreditAccount)
class CreditAccountAdmin(ReadOnly):
    """Read-only: money moves only through grants, adjustments and refunds (with a reason, into
    the ledger), never by editing a balance."""

    list_display = (
        "pk",
        "organization",
        "user",
        "balance_dollars",
        "owed_dollars",
        "auto_topup_enabled",
    )
    search_fields = ("organization__name", "user__email", "organization__memberships__user__email")
    list_filter = (DisputedFilter, "auto_topup_enabled")
    list_select_related = ("organization", "user")
    fields = (
        "organization",
        "user",
        "balance_dollars",
        "held_dollars",
        "owed_dollars",
        "grant_link",
        "created_at",
        "auto_topup_enabled",
        "auto_topup_threshold_dollars",
        "auto_topup_amount_cents",
        "auto_topup_last_error",
        "low_balance_threshold_dollars",
        "member_daily_limit_dollars",
    )
    readonly_fields = fields

    @admin.display(description="Balance")
    def balance_dollars(self, obj: CreditAccount) -> str:
        return _dollars(obj.balance)

    @admin.display(description="Owes (refunded or charged back beyond the balance)")
    def owed_dollars(self, obj: CreditAccount) -> str:
        return _dollars(obj.owed)

    @admin.display(description="Held by requests in progress")
    def held_dollars(self, obj: CreditAccount) -> str:
        return _dollars(obj.held)

    @admin.display(description="Auto top-up under")
    def auto_topup_threshold_dollars(self, obj: CreditAccount) -> str:
        return _dollars(obj.auto_topup_threshold)

    @admin.display(description="Low-balance alert under")
    def low_balance_threshold_dollars(self, obj: CreditAccount) -> str:
        return _dollars(obj.low_balance_threshold)

    @admin.display(description="Member daily limit")
    def member_daily_limit_dollars(self, obj: CreditAccount) -> str:
        return _dollars(obj.member_daily_limit)

    @admin.display(description="Grant or adjust")
    def grant_link(self, obj: CreditAccount) -> str:
        url = reverse("admin:credits_creditaccount_grant", args=[obj.pk])
        return format_html('<a class="button" href="{}">Grant or adjust credits…</a>', url)

    def get_urls(self) -> list[URLPattern]:
        grant = path(
            "<int:account_id>/grant/",
            self.admin_site.admin_view(self.grant_view),
            name="credits_creditaccount_grant",
        )
        for_organization = path(
            "organization/<uuid:org_id>/grant/",
            self.admin_site.admin_view(self.organization_grant_view),
            name="credits_creditaccount_grant_organization",
        )
        return [grant, for_organization, *super().get_urls()]

    def organization_grant_view(self, request: HttpRequest, org_id: UUID) -> HttpResponse:
        """From the organization's admin page, which may not import credits: its account."""
        if (denied := _without_money_permission(request)) is not None:
            return denied
        organization = get_object_or_404(Organization, pk=org_id)
        account = account_for(organization=organization)
        return redirect(reverse("admin:credits_creditaccount_grant", args=[account.pk]))

    def grant_view(self, request: HttpRequest, account_id: int) -> HttpResponse:
        """Staff grant or adjustment: the form, a confirmation page stating the amount and the
        balance before and after, then the ledger entry (once, by the confirmation's key)."""
        if (denied := _without_money_permission(request)) is not None:
            return denied
        account = get_object_or_404(
            CreditAccount.objects.select_related("organization", "user"), pk=account_id
        )
        form = GrantForm(request.POST or None)
        context = {
            **self.admin_site.each_context(request),
            "account": account,
            "title": "Grant or adjust credits",
            "form": form,
        }
        if request.method != "POST" or not form.is_valid():
            return render(request, "admin/credits/grant.html", context)
        amount = form.cleaned_data["amount"]
        if not form.cleaned_data["confirmed"] or form.cleaned_data["key"] is None:
            confirm = GrantForm(
                initial={
                    **form.cleaned_data,
                    "amount": request.POST["amount"],
                    "key": uuid.uuid4(),
                    "confirmed": True,
                }
            )
            context.update(
                {
                    "form": confirm,
                    "confirming": True,
                    "amount": amount,
                    "balance_after": account.balance + amount,
                    "large": abs(amount) > GRANT_PLAIN_MAX,
                }
            )
            return render(request, "admin/credits/grant.html", context)
        try:
            credits_grant(
                actor=request.user,  # type: ignore[arg-type]
                account=account,
                amount=amount,
                reason=form.cleaned_data["reason"],
                idempotency_key=str(form.cleaned_data["key"]),
                large_confirmed=form.cleaned_data["large_confirmed"],
            )
        except GrantRefused as refused:
            messages.error(request, f"Nothing was applied: {refused.message}")
            context["form"] = GrantForm(initial={"reason": form.cleaned_data["reason"]})
            return render(request, "admin/credits/grant.html", context, status=400)
        account.refresh_from_db()
        messages.success(
            request,
            f"Applied {microdollars_filter(amount)}; the balance is now "
            f"{microdollars_filter(account.balance)}.",
        )
        return redirect(reverse("admin:credits_creditaccount_change", args=[account.pk]))


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnly):
    list_display = (
        "created_at",
        "account",
        "kind",
        "amount_dollars",
        "source",
        "idempotency_key",
        "actor",
        "reason",
    )
    list_filter = ("kind", "source")
    search_fields = (
        "idempotency_key",
        "reason",
        "account__organization__name",
        "account__user__email",
    )
    list_select_related = ("account", "actor")
    date_hierarchy = "created_at"

    @admin.display(description="Amount", ordering="amount")
    def amount_dollars(self, obj: LedgerEntry) -> str:
        return _dollars(obj.amount)


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnly):
    list_display = (
        "created_at",
        "account",
        "user",
        "provider",
        "model",
        "project",
        "cost",
        "uncollected",
    )
    list_filter = ("provider",)
    search_fields = ("request_id", "model", "project", "user__email")
    list_select_related = ("account", "user")
    date_hierarchy = "created_at"


REFUND_MAX_DOLLARS = 1_000_000


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
        return dollars_field(
            self.cleaned_data["amount"], field="amount", max_dollars=REFUND_MAX_DOLLARS
        )


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
        "payer",
        "kind",
        "amount",
        "status",
        "invoice_number",
        "refund_link",
    )
    list_filter = ("status", "kind")
    # Staff know a customer by its organization's name or id, or by a person's email (the
    # buyer of personal credits, or anyone in the organization), as often as by an invoice.
    search_fields = (
        # Ids whole (compared as text: a name typed in the box is no error), not a few digits.
        "id__exact",
        "gateway_invoice_id",
        "invoice_number",
        "checkout_session_id",
        "idempotency_key",
        "account__organization__name",
        "account__organization__id__exact",
        "account__organization__memberships__user__email",
        "account__user__email",
        "created_by__email",
    )
    list_select_related = ("account__organization", "account__user")
    readonly_fields = ("payer", "refund_link")
    inlines = (ReversalInline,)

    @admin.display(description="Amount", ordering="amount_cents")
    def amount(self, obj: Purchase) -> str:
        return cents_filter(obj.amount_cents)

    @admin.display(description="For")
    def payer(self, obj: Purchase) -> str:
        account = obj.account
        if account.organization is not None:
            url = reverse("admin:organizations_organization_change", args=[account.organization_id])
            return format_html('<a href="{}">{}</a>', url, account.organization.name)
        if account.user is not None:
            return format_html("{} <small>(personal)</small>", account.user.email)
        return str(account)

    @admin.display(description="Refund")
    def refund_link(self, obj: Purchase) -> str:
        if obj.status != Purchase.Status.PAID:
            return "—"
        url = reverse("admin:credits_purchase_refund", args=[obj.pk])
        return format_html('<a href="{}">Refund…</a>', url)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # A purchase moves only through its services (paid, refunded, ended): never by a form.
        own = tuple(field.name for field in Purchase._meta.fields)
        return (*self.readonly_fields, *own)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # Who paid and the refund first; then the purchase's own fields.
        own = tuple(field.name for field in Purchase._meta.fields if field.name != "id")
        return ("payer", "refund_link", *own)

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
        if (denied := _without_money_permission(request)) is not None:
            return denied
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
                        f"Refunded {cents_filter(refund.amount)} of purchase {purchase.pk}"
                        f" ({refund.id}).",
                    )
                    return redirect(reverse("admin:credits_purchase_change", args=[purchase.pk]))
            else:
                try:
                    refund_check(
                        terms,
                        amount_cents=data["amount"],
                        beyond_unspent=data["beyond_unspent"],
                    )
                except RefundRefused as refused:
                    form.add_error("amount", refused.message)
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


@admin.register(Hold)
class HoldAdmin(ReadOnly):
    """Streaming requests in progress and how they ended: moved only by the API and beat."""

    list_display = (
        "pk",
        "created_at",
        "account",
        "user",
        "model",
        "amount_dollars",
        "status",
        "expires_at",
        "cost",
        "uncollected",
    )
    list_filter = ("status",)
    search_fields = ("request_id", "account__organization__name", "user__email")
    list_select_related = ("account", "user")
    date_hierarchy = "created_at"

    @admin.display(description="Held", ordering="amount")
    def amount_dollars(self, obj: Hold) -> str:
        return _dollars(obj.amount)


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
