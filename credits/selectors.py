from dataclasses import dataclass
from datetime import date
from typing import Any

from django.db.models import QuerySet

from accounts.models import User
from credits.models import (
    ApiToken,
    CreditAccount,
    Hold,
    LedgerEntry,
    MemberBudget,
    Purchase,
    SpendCounter,
    UsageRecord,
)
from credits.pricing import price_in_force


def ledger(*, account: CreditAccount) -> QuerySet[LedgerEntry]:
    return (
        LedgerEntry.objects.filter(account=account)
        .select_related("actor", "usage")
        .order_by("-created_at", "-pk")
    )


def purchases(*, account: CreditAccount) -> QuerySet[Purchase]:
    """Newest first, each with its refunds and disputes (`reversals`)."""
    return (
        Purchase.objects.filter(account=account)
        .prefetch_related("reversals")
        .order_by("-created_at", "-pk")
    )


def api_tokens_with_spend(*, user: User, month: date) -> list[ApiToken]:
    """The user's active tokens, each with `spent_this_month` (against its cap, if it has one)."""
    tokens = list(api_tokens(user=user))
    spent = dict(
        SpendCounter.objects.filter(
            account__isnull=True,
            scope=SpendCounter.Scope.TOKEN_MONTH,
            period=month,
            subject_id__in=[token.pk for token in tokens],
        ).values_list("subject_id", "spent")
    )
    for token in tokens:
        token.spent_this_month = spent.get(token.pk, 0)  # type: ignore[attr-defined]
    return tokens


def api_tokens(*, user: User) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user, revoked_at__isnull=True).order_by("-created_at")


ROUNDING_RULE = (
    "Each token count times its list price per million tokens (integer microdollars), the four "
    "products added, the exact sum divided by 1,000,000 once and rounded half up to the "
    "microdollar. Nothing is added: zero markup."
)
_TOKEN_KINDS = (
    ("input", "input_tokens", "input_price"),
    ("output", "output_tokens", "output_price"),
    ("cache_read", "cache_read_tokens", "cache_read_price"),
    ("cache_write", "cache_write_tokens", "cache_write_price"),
)


def usage_receipt(*, account_id: int, user_id: int | None, entry_id: int) -> dict[str, Any] | None:
    """The receipt of one debit in one account (of `user_id`'s only, unless None): the tokens
    of each kind, the list prices it was charged at (their effective date and source), the
    arithmetic from them to the cost, and the ledger entry. None when there is no such debit."""
    records = UsageRecord.objects.select_related("entry", "price", "user").filter(
        entry_id=entry_id, account_id=account_id
    )
    if user_id is not None:
        records = records.filter(user_id=user_id)
    record = records.first()
    if record is None:
        return None
    price = record.price or price_in_force(
        provider=record.provider, model_id=record.model, on=record.created_at.date()
    )
    lines = [
        {
            "kind": kind,
            "tokens": getattr(record, tokens_field),
            "price_per_million": getattr(price, price_field) if price else 0,
            "microdollars_times_million": getattr(record, tokens_field)
            * (getattr(price, price_field) if price else 0),
        }
        for kind, tokens_field, price_field in _TOKEN_KINDS
    ]
    exact = sum(line["microdollars_times_million"] for line in lines)
    entry = record.entry
    return {
        "entry_id": entry.pk,
        "request_id": record.request_id,
        "created_at": record.created_at.isoformat(),
        "user": record.user.email if record.user else "",
        "provider": record.provider,
        "model": record.model,
        "project": record.project,
        "tokens": {line["kind"]: line["tokens"] for line in lines},
        "price": {
            "id": price.pk,
            "effective_from": price.effective_from.isoformat(),
            "source_url": price.source_url,
            "input": price.input_price,
            "output": price.output_price,
            "cache_read": price.cache_read_price,
            "cache_write": price.cache_write_price,
        }
        if price
        else None,
        "lines": lines,
        "exact_microdollars_times_million": exact,
        # What the list prices come to; a settled hold may have collected less (uncollected).
        "cost_microdollars": record.cost + record.uncollected,
        "rounding": ROUNDING_RULE,
        "uncollected_microdollars": record.uncollected,
        "ledger_entry": {
            "id": entry.pk,
            "kind": entry.kind,
            "source": entry.source,
            "amount_microdollars": entry.amount,
            "created_at": entry.created_at.isoformat(),
        },
    }


@dataclass(frozen=True)
class BudgetUse:
    """One member's monthly budget and what they spent of it this month (holds in progress
    count until they end), from the counter the debits keep."""

    user_id: int
    email: str
    name: str
    monthly_limit: int
    spent: int

    @property
    def left(self) -> int:
        return max(self.monthly_limit - self.spent, 0)

    @property
    def near(self) -> bool:
        """At 80 % or more of it."""
        return self.spent * 5 >= self.monthly_limit * 4


def budget_uses(
    *, account: CreditAccount, month: date, user_id: int | None = None
) -> list[BudgetUse]:
    """Every member budget of the account (or only `user_id`'s) with this month's spend,
    fullest first."""
    budgets = MemberBudget.objects.filter(account=account).select_related("user")
    counters = SpendCounter.objects.filter(
        account=account, scope=SpendCounter.Scope.MEMBER_MONTH, period=month
    )
    if user_id is not None:
        budgets = budgets.filter(user_id=user_id)
        counters = counters.filter(subject_id=user_id)
    spent = dict(counters.values_list("subject_id", "spent"))
    uses = [
        BudgetUse(
            user_id=budget.user_id,
            email=budget.user.email,
            name=budget.user.name,
            monthly_limit=budget.monthly_limit,
            spent=spent.get(budget.user_id, 0),
        )
        for budget in budgets
    ]
    return sorted(uses, key=lambda use: (-use.spent / max(use.monthly_limit, 1), use.email))


def budget_use(*, account: CreditAccount, user_id: int, month: date) -> BudgetUse | None:
    uses = budget_uses(account=account, month=month, user_id=user_id)
    return uses[0] if uses else None


def holds_in_progress(*, account: CreditAccount) -> QuerySet[Hold]:
    return Hold.objects.filter(account=account, status=Hold.Status.ACTIVE).order_by("created_at")


def hold_account_id(*, hold_id: int, user_id: int) -> int | None:
    """The account of the user's own hold; None for an unknown hold or another user's."""
    return (
        Hold.objects.filter(pk=hold_id, user_id=user_id)
        .values_list("account_id", flat=True)
        .first()
    )


def usage_records(*, account_id: int | None, user_id: int | None = None) -> QuerySet[UsageRecord]:
    """An account's requests (only `user_id`'s, unless None), newest first, with their member."""
    if account_id is None:
        return UsageRecord.objects.none()
    records = UsageRecord.objects.filter(account_id=account_id)
    if user_id is not None:
        records = records.filter(user_id=user_id)
    return records.select_related("user").order_by("-created_at", "-pk")
