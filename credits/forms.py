from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django import forms

from credits.exceptions import AutoTopupRefused
from credits.models import MICRODOLLARS_PER_DOLLAR
from credits.money import MoneyError, cents_to_microdollars, parse_dollars
from credits.rules import (
    AUTO_TOPUP_MAX_CENTS,
    AUTO_TOPUP_MIN_CENTS,
    AUTO_TOPUP_THRESHOLD_MAX,
    auto_topup_check,
)


@dataclass(frozen=True)
class PurchaseRules:
    presets: tuple[int, ...]  # dollars
    custom_min: int
    custom_max: int


ORGANIZATION_RULES = PurchaseRules(
    presets=(50, 100, 250, 500, 1000), custom_min=1000, custom_max=10_000
)
PERSONAL_RULES = PurchaseRules(presets=(20, 50, 100), custom_min=10, custom_max=10_000)


# Bounds of what people may set, in dollars. Each keeps its microdollars far from overflowing.
LOW_BALANCE_MAX_DOLLARS = 1_000_000
DAILY_LIMIT_MAX_DOLLARS = 100_000


def dollars_field(raw: str, *, field: str, max_dollars: int, min_cents: int = 1) -> int:
    """A form field's dollars as cents (credits.money), its problem as the field's error."""
    try:
        return parse_dollars(raw, field=field, max_dollars=max_dollars, min_cents=min_cents)
    except MoneyError as error:
        raise forms.ValidationError(error.message) from None


def microdollars_field(raw: str, *, field: str, max_dollars: int, min_cents: int = 1) -> int | None:
    """An optional field's dollars as microdollars (None when left empty), for thresholds,
    limits, budgets and caps; its problem as the field's error."""
    raw = raw.strip()
    if not raw:
        return None
    cents = dollars_field(raw, field=field, max_dollars=max_dollars, min_cents=min_cents)
    return cents_to_microdollars(cents)


class BuyCreditsForm(forms.Form):
    preset = forms.ChoiceField(required=False, widget=forms.RadioSelect)
    custom = forms.CharField(required=False, max_length=20, label="Or another amount (USD)")

    def __init__(self, *args: object, rules: PurchaseRules, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.rules = rules
        self.fields["preset"].choices = [(str(d), f"${d:,}") for d in rules.presets]  # type: ignore[attr-defined]
        self.fields[
            "custom"
        ].help_text = f"From ${rules.custom_min:,} to ${rules.custom_max:,}, in whole cents."

    def clean(self) -> dict[str, object]:
        cleaned = super().clean() or {}
        custom, preset = (cleaned.get("custom") or "").strip(), cleaned.get("preset")
        if custom:
            cents = dollars_field(str(custom), field="amount", max_dollars=10**9)
            if cents < self.rules.custom_min * 100:
                raise forms.ValidationError(
                    f"Another amount starts at ${self.rules.custom_min:,}; "
                    "pick a preset below that."
                )
            if cents > self.rules.custom_max * 100:
                raise forms.ValidationError(
                    f"The most you can buy at once is ${self.rules.custom_max:,}. "
                    "Contact us for larger amounts."
                )
        elif preset:
            cents = int(str(preset)) * 100
        else:
            raise forms.ValidationError("Choose an amount.")
        cleaned["amount_cents"] = cents
        return cleaned


class ConfirmPurchaseForm(forms.Form):
    amount_cents = forms.IntegerField(min_value=1, widget=forms.HiddenInput)
    key = forms.UUIDField(widget=forms.HiddenInput)

    def __init__(self, *args: object, rules: PurchaseRules, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.rules = rules

    def clean_amount_cents(self) -> int:
        cents: int = self.cleaned_data["amount_cents"]
        allowed = cents in {d * 100 for d in self.rules.presets} or (
            self.rules.custom_min * 100 <= cents <= self.rules.custom_max * 100
        )
        if not allowed:
            raise forms.ValidationError("That amount cannot be bought; choose it again.")
        return cents


class AutoTopupForm(forms.Form):
    enabled = forms.BooleanField(required=False, label="Top up automatically")
    threshold = forms.CharField(max_length=20, label="When the balance falls under (USD)")
    amount = forms.CharField(max_length=20, label="Buy (USD)")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Ids of its own: the low-balance form on the same page has a `threshold` too, and the
        # error summary links to each field by id.
        kwargs.setdefault("auto_id", "topup_%s")
        super().__init__(*args, **kwargs)

    def clean_threshold(self) -> int:
        cents = dollars_field(
            self.cleaned_data["threshold"],
            field="threshold",
            max_dollars=AUTO_TOPUP_THRESHOLD_MAX // MICRODOLLARS_PER_DOLLAR,
        )
        return cents_to_microdollars(cents)

    def clean_amount(self) -> int:
        return dollars_field(
            self.cleaned_data["amount"],
            field="top-up amount",
            max_dollars=AUTO_TOPUP_MAX_CENTS // 100,
            min_cents=AUTO_TOPUP_MIN_CENTS,
        )

    def clean(self) -> dict[str, object]:
        cleaned = super().clean() or {}
        threshold, amount = cleaned.get("threshold"), cleaned.get("amount")
        if isinstance(threshold, int) and isinstance(amount, int):
            try:
                auto_topup_check(threshold=threshold, amount_cents=amount)
            except AutoTopupRefused as refused:
                self.add_error("amount", refused.message)
        return cleaned


class LowBalanceForm(forms.Form):
    threshold = forms.CharField(
        max_length=20, required=False, label="Alert when the balance falls under (USD); empty: off"
    )
    recipients = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Send to (one email per line; empty: the owners and billing managers, or you for "
        "personal credits)",
        help_text="An organization's billing email (in its billing details) always gets it too.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "alert_%s")
        super().__init__(*args, **kwargs)

    def clean_threshold(self) -> int | None:
        return microdollars_field(
            self.cleaned_data["threshold"], field="threshold", max_dollars=LOW_BALANCE_MAX_DOLLARS
        )

    def clean_recipients(self) -> list[str]:
        emails = [
            line.strip() for line in self.cleaned_data["recipients"].splitlines() if line.strip()
        ]
        validator = forms.EmailField()
        for email in emails:
            validator.clean(email)
        if len(emails) > 20:
            raise forms.ValidationError("At most 20 recipients.")
        return emails


class DailyLimitForm(forms.Form):
    limit = forms.CharField(
        max_length=20,
        required=False,
        label="Each member may spend per UTC day (USD); empty: no limit",
    )

    def clean_limit(self) -> int | None:
        return microdollars_field(
            self.cleaned_data["limit"], field="limit", max_dollars=DAILY_LIMIT_MAX_DOLLARS
        )


BUDGET_MAX_DOLLARS = 1_000_000


class MemberBudgetForm(forms.Form):
    user_id = forms.IntegerField(widget=forms.HiddenInput)
    budget = forms.CharField(
        max_length=20, required=False, label="Monthly budget (USD); empty: no budget"
    )

    def clean_budget(self) -> int | None:
        return microdollars_field(
            self.cleaned_data["budget"], field="budget", max_dollars=BUDGET_MAX_DOLLARS, min_cents=0
        )


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=100, label="Token name", initial="VS Code on my laptop")
    monthly_cap = forms.CharField(
        max_length=20,
        required=False,
        label="Most it may spend per month (USD); empty: no cap",
        help_text="Counted over every profile the token spends from; it cannot be changed later.",
    )

    def clean_monthly_cap(self) -> int | None:
        return microdollars_field(
            self.cleaned_data["monthly_cap"],
            field="cap",
            max_dollars=BUDGET_MAX_DOLLARS,
            min_cents=0,
        )


def dollars_text(microdollars: int) -> str:
    return f"{Decimal(microdollars) / MICRODOLLARS_PER_DOLLAR:.2f}"
