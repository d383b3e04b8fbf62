from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django import forms

from credits.models import MICRODOLLARS_PER_DOLLAR


@dataclass(frozen=True)
class PurchaseRules:
    presets: tuple[int, ...]  # dollars
    custom_min: int
    custom_max: int


ORGANIZATION_RULES = PurchaseRules(
    presets=(50, 100, 250, 500, 1000), custom_min=1000, custom_max=10_000
)
PERSONAL_RULES = PurchaseRules(presets=(20, 50, 100), custom_min=10, custom_max=10_000)


# Far above any amount the product takes, and small enough for exact cents.
MAX_DOLLARS = Decimal(10**9)


def parse_dollars(raw: str, *, field: str = "amount") -> int:
    """Dollars typed by a person into integer cents: "1,250.5" → 125050. Errors say why."""
    text = raw.strip().replace(",", "").removeprefix("$").strip()
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise forms.ValidationError(
            f"Enter the {field} as a number of dollars, e.g. 1500."
        ) from None
    if not value.is_finite():
        raise forms.ValidationError(f"Enter the {field} as a number of dollars, e.g. 1500.")
    if value <= 0:
        raise forms.ValidationError(f"The {field} must be more than $0.")
    if value > MAX_DOLLARS:
        raise forms.ValidationError(f"The {field} is far more than anything sold here.")
    if value != value.quantize(Decimal("0.01")):
        raise forms.ValidationError("Amounts are in whole cents: use at most two decimals.")
    return int(value * 100)


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
            cents = parse_dollars(str(custom))
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


def _microdollars(raw: str, field: str) -> int:
    return parse_dollars(raw, field=field) * 10_000


class AutoTopupForm(forms.Form):
    enabled = forms.BooleanField(required=False, label="Top up automatically")
    threshold = forms.CharField(max_length=20, label="When the balance falls under (USD)")
    amount = forms.CharField(max_length=20, label="Buy (USD)")

    def clean_threshold(self) -> int:
        return _microdollars(self.cleaned_data["threshold"], "threshold")

    def clean_amount(self) -> int:
        cents = parse_dollars(self.cleaned_data["amount"], field="top-up amount")
        if not 10 * 100 <= cents <= 10_000 * 100:
            raise forms.ValidationError("A top-up is between $10 and $10,000.")
        return cents


class LowBalanceForm(forms.Form):
    threshold = forms.CharField(
        max_length=20, required=False, label="Alert when the balance falls under (USD); empty: off"
    )
    recipients = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Send to (one email per line; empty: owners and billing managers)",
    )

    def clean_threshold(self) -> int | None:
        raw = self.cleaned_data["threshold"].strip()
        return _microdollars(raw, "threshold") if raw else None

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
        raw = self.cleaned_data["limit"].strip()
        return _microdollars(raw, "limit") if raw else None


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=100, label="Token name", initial="VS Code on my laptop")


def dollars_text(microdollars: int) -> str:
    return f"{Decimal(microdollars) / MICRODOLLARS_PER_DOLLAR:.2f}"
