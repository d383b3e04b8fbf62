"""The Credits tab of an organization and the personal credits page: the same pages for two kinds
of account. Each view resolves its scope (through the access helper for organizations), then
validates a form and calls one service."""

import uuid
from dataclasses import dataclass
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.models import User
from billing.selectors import saved_card
from credits import selectors, services
from credits.exceptions import AutoTopupRefused, PurchaseDeclined
from credits.forms import (
    ORGANIZATION_RULES,
    PERSONAL_RULES,
    ApiTokenForm,
    AutoTopupForm,
    BuyCreditsForm,
    ConfirmPurchaseForm,
    DailyLimitForm,
    LowBalanceForm,
    MemberBudgetForm,
    PurchaseRules,
    dollars_text,
)
from credits.models import CreditAccount
from organizations.access import membership_for
from organizations.models import Membership
from organizations.roles import Permission, allows
from organizations.selectors import members_of_organization, memberships_of_user
from payments.gateway import GatewayError
from seats.models import SEAT_ROLES


@dataclass(frozen=True)
class Scope:
    """Whose credits a page is about, and where its links go."""

    account: CreditAccount
    rules: PurchaseRules
    membership: Membership | None
    args: tuple[str, ...]
    prefix: str  # "org" or "personal"

    def url(self, name: str, *extra: object) -> str:
        return reverse(f"{self.prefix}_{name}", args=[*self.args, *extra])

    @property
    def context(self) -> dict[str, object]:
        names = ["credits", "buy", "confirm", "auto_topup", "low_balance"]
        urls = {name: self.url(name) for name in names}
        if self.membership is not None:
            urls["daily_limit"] = self.url("daily_limit")
        return {
            "scope": self,
            "urls": urls,
            "membership": self.membership,
            "tab": "credits",
            "account": self.account,
        }


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user


def _scope(request: HttpRequest, org_id: UUID | None) -> Scope:
    if org_id is None:
        account = services.account_for(user=_user(request))
        return Scope(account, PERSONAL_RULES, None, (), "personal")
    membership = membership_for(request, org_id, permission=Permission.MANAGE_CREDITS)
    account = services.account_for(organization=membership.organization)
    return Scope(account, ORGANIZATION_RULES, membership, (str(org_id),), "org")


# A form sent back with its errors, as the summary at the top of the page names it: the page is
# long, and on a phone the form's own section is screens below where the browser shows it.
FAILED = {
    "buy_form": ("Nothing is bought yet", "buy-credits"),
    "topup_form": ("Auto top-up is not saved", "auto-top-up"),
    "alert_form": ("The low-balance alert is not saved", "low-balance"),
    "limit_form": ("The daily limit is not saved", "daily-limit"),
}


def _page(request: HttpRequest, scope: Scope, **forms: object) -> HttpResponse:
    account = scope.account
    can_limit = scope.membership is not None and allows(
        scope.membership.role, Permission.MANAGE_SETTINGS
    )
    page = Paginator(selectors.ledger(account=account), 25).get_page(request.GET.get("page"))
    context = {
        **scope.context,
        "buy_form": forms.get("buy_form") or BuyCreditsForm(rules=scope.rules),
        "topup_form": forms.get("topup_form")
        or AutoTopupForm(
            initial={
                "enabled": account.auto_topup_enabled,
                "threshold": dollars_text(account.auto_topup_threshold),
                "amount": f"{account.auto_topup_amount_cents / 100:.2f}",
            }
        ),
        "alert_form": forms.get("alert_form")
        or LowBalanceForm(
            initial={
                "threshold": dollars_text(account.low_balance_threshold)
                if account.low_balance_threshold is not None
                else "",
                "recipients": account.low_balance_recipients,
            }
        ),
        "limit_form": (
            forms.get("limit_form")
            or DailyLimitForm(
                initial={
                    "limit": dollars_text(account.member_daily_limit)
                    if account.member_daily_limit
                    else ""
                }
            )
        )
        if can_limit
        else None,
        "card": saved_card(organization=account.organization, user=account.user),
        "page": page,
        "recent_purchases": selectors.purchases(account=account)[:5],
        "holds_in_progress": selectors.holds_in_progress(account=account).count()
        if account.held
        else 0,
        "failed": [
            {"title": FAILED[name][0], "section": FAILED[name][1], "form": form}
            for name, form in forms.items()
        ],
    }
    return render(request, "credits/credits.html", context, status=400 if forms else 200)


def credits_page(request: HttpRequest, org_id: UUID | None = None) -> HttpResponse:
    return _page(request, _scope(request, org_id))


def buy(request: HttpRequest, org_id: UUID | None = None) -> HttpResponse:
    """Step 1 → 2: the amount chosen, show what exactly will be charged, and to which card."""
    scope = _scope(request, org_id)
    form = BuyCreditsForm(request.POST if request.method == "POST" else None, rules=scope.rules)
    if request.method != "POST" or not form.is_valid():
        return (
            _page(request, scope, buy_form=form)
            if request.method == "POST"
            else redirect(scope.url("credits"))
        )
    confirm = ConfirmPurchaseForm(
        initial={"amount_cents": form.cleaned_data["amount_cents"], "key": uuid.uuid4()},
        rules=scope.rules,
    )
    return _confirm_page(request, scope, confirm, form.cleaned_data["amount_cents"])


def _confirm_page(
    request: HttpRequest,
    scope: Scope,
    form: ConfirmPurchaseForm,
    amount_cents: int,
    error: str = "",
) -> HttpResponse:
    context = {
        **scope.context,
        "form": form,
        "amount_cents": amount_cents,
        "card": saved_card(organization=scope.account.organization, user=scope.account.user),
        "error": error,
    }
    return render(request, "credits/confirm.html", context, status=402 if error else 200)


def confirm(request: HttpRequest, org_id: UUID | None = None) -> HttpResponse:
    """Step 2 → 3: charge (or go to Checkout). The form's key makes a double submit harmless."""
    scope = _scope(request, org_id)
    if request.method != "POST":
        return redirect(scope.url("credits"))
    form = ConfirmPurchaseForm(request.POST, rules=scope.rules)
    if not form.is_valid():
        messages.error(request, "That purchase could not be confirmed; choose the amount again.")
        return redirect(scope.url("credits"))
    amount_cents = form.cleaned_data["amount_cents"]
    credits_url = request.build_absolute_uri(scope.url("credits"))
    try:
        start = services.credits_purchase(
            actor=_user(request),
            account=scope.account,
            amount_cents=amount_cents,
            idempotency_key=f"credits-{form.cleaned_data['key']}",
            success_url=credits_url + "purchases/{PURCHASE_ID}/",
            cancel_url=credits_url,
        )
    except PurchaseDeclined as declined:
        return _confirm_page(request, scope, form, amount_cents, error=declined.message)
    if start.checkout_url:
        return redirect(start.checkout_url)
    if start.action_url:
        # The bank wants the buyer to confirm the payment: to its page, then back here.
        return redirect(start.action_url)
    return redirect(scope.url("purchase", start.purchase.pk))


def purchase(request: HttpRequest, purchase_id: int, org_id: UUID | None = None) -> HttpResponse:
    scope = _scope(request, org_id)
    record = get_object_or_404(selectors.purchases(account=scope.account), pk=purchase_id)
    try:
        # Credited, ended (its Checkout expired) or on its way (a bank debit) by the answer.
        services.purchase_refresh(purchase=record)
    except GatewayError:
        messages.info(request, "The payment provider did not answer; reload in a moment.")
    record.refresh_from_db()
    scope.account.refresh_from_db()
    return render(request, "credits/purchase.html", {**scope.context, "purchase": record})


def auto_topup(request: HttpRequest, org_id: UUID | None = None) -> HttpResponse:
    scope = _scope(request, org_id)
    form = AutoTopupForm(request.POST or None)
    if request.method != "POST":
        return redirect(scope.url("credits"))
    if not form.is_valid():
        return _page(request, scope, topup_form=form)
    try:
        services.auto_topup_configure(
            actor=_user(request),
            account=scope.account,
            enabled=form.cleaned_data["enabled"],
            threshold=form.cleaned_data["threshold"],
            amount_cents=form.cleaned_data["amount"],
        )
    except AutoTopupRefused as refused:
        form.add_error("amount", refused.message)
        return _page(request, scope, topup_form=form)
    except PurchaseDeclined as refused:
        form.add_error("enabled", refused.message)
        return _page(request, scope, topup_form=form)
    messages.success(request, "Auto top-up is saved.")
    return redirect(scope.url("credits"))


def low_balance(request: HttpRequest, org_id: UUID | None = None) -> HttpResponse:
    scope = _scope(request, org_id)
    form = LowBalanceForm(request.POST or None)
    if request.method != "POST":
        return redirect(scope.url("credits"))
    if not form.is_valid():
        return _page(request, scope, alert_form=form)
    services.low_balance_configure(
        actor=_user(request),
        account=scope.account,
        threshold=form.cleaned_data["threshold"],
        recipients=form.cleaned_data["recipients"],
    )
    messages.success(request, "The low-balance alert is saved.")
    return redirect(scope.url("credits"))


@login_required
@require_POST
def daily_limit(request: HttpRequest, org_id: UUID) -> HttpResponse:
    membership = membership_for(request, org_id, permission=Permission.MANAGE_SETTINGS)
    scope = _scope(request, org_id)
    form = DailyLimitForm(request.POST)
    if not form.is_valid():
        return _page(request, scope, limit_form=form)
    services.member_daily_limit_set(
        actor=_user(request),
        account=services.account_for(organization=membership.organization),
        limit=form.cleaned_data["limit"],
    )
    messages.success(request, "The daily limit per member is saved.")
    return redirect(scope.url("credits"))


@login_required
def member_budgets(request: HttpRequest, org_id: UUID) -> HttpResponse:
    """Owners and admins set what each member may spend per calendar month; the page shows
    everyone's spend of it, fullest first."""
    membership = membership_for(request, org_id, permission=Permission.MANAGE_SETTINGS)
    organization = membership.organization
    account = services.account_for(organization=organization)
    people = members_of_organization(organization=organization).filter(role__in=SEAT_ROLES)
    form = MemberBudgetForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid() and (
            target := people.filter(user_id=form.cleaned_data["user_id"]).first()
        ):
            services.member_budget_set(
                actor=_user(request),
                account=account,
                user=target.user,
                monthly_limit=form.cleaned_data["budget"],
            )
            messages.success(request, f"The monthly budget of {target.user.email} is saved.")
            return redirect("org_member_budgets", org_id=org_id)
        messages.error(request, form.errors.as_text() or "Choose a member of the organization.")
    month = services.month_start(timezone.now())
    uses = {use.user_id: use for use in selectors.budget_uses(account=account, month=month)}
    rows = [(person, uses.get(person.user_id)) for person in people]
    return render(
        request,
        "credits/budgets.html",
        {"membership": membership, "tab": "members", "rows": rows, "month": month},
        status=400 if request.method == "POST" else 200,
    )


# Personal API tokens


@login_required
def tokens(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    form = ApiTokenForm(request.POST or None)
    new_token = ""
    if request.method == "POST" and form.is_valid():
        _, new_token = services.api_token_create(
            user=user,
            name=form.cleaned_data["name"],
            monthly_cap=form.cleaned_data["monthly_cap"],
        )
        form = ApiTokenForm()
    return render(
        request,
        "credits/tokens.html",
        {
            "form": form,
            "tokens": selectors.api_tokens_with_spend(
                user=user, month=services.month_start(timezone.now())
            ),
            "new_token": new_token,
            # The ids the extension sends as X-KiloCode-OrganizationId.
            "memberships": memberships_of_user(user=user),
        },
    )


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    user = _user(request)
    token = get_object_or_404(selectors.api_tokens(user=user), pk=token_id)
    services.api_token_revoke(user=user, token=token)
    messages.success(request, f"The token “{token.name}” is revoked; it stops working now.")
    return redirect("personal_tokens")


# Both scopes need a log-in; the organization views also pass through membership_for.
credits_page = login_required(credits_page)
buy = login_required(buy)
confirm = login_required(confirm)
purchase = login_required(purchase)
auto_topup = login_required(auto_topup)
low_balance = login_required(low_balance)
