import re

from django import forms

from payments.sandbox.engine import BankAccount, Card


class CardForm(forms.Form):
    number = forms.CharField(
        label="Card number",
        max_length=23,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "cc-number",
                "inputmode": "numeric",
                "placeholder": "4242 4242 4242 4242",
            }
        ),
    )
    expiry = forms.CharField(
        label="Expiry (MM / YY)",
        max_length=7,
        widget=forms.TextInput(attrs={"autocomplete": "cc-exp", "placeholder": "12 / 34"}),
    )
    cvc = forms.CharField(
        label="CVC",
        max_length=4,
        widget=forms.TextInput(
            attrs={"autocomplete": "cc-csc", "inputmode": "numeric", "placeholder": "123"}
        ),
    )
    name = forms.CharField(label="Name on card", max_length=100, required=False)

    def clean_expiry(self) -> tuple[int, int]:
        match = re.fullmatch(r"\s*(\d{1,2})\s*/\s*(\d{2}|\d{4})\s*", self.cleaned_data["expiry"])
        if not match:
            raise forms.ValidationError("Enter the expiry as MM / YY.")
        month, year = int(match.group(1)), int(match.group(2))
        return month, year + 2000 if year < 100 else year

    def card(self) -> Card:
        month, year = self.cleaned_data["expiry"]
        return Card(
            number=self.cleaned_data["number"],
            exp_month=month,
            exp_year=year,
            cvc=self.cleaned_data["cvc"].strip(),
        )


class BankAccountForm(forms.Form):
    """A US bank account for ACH Direct Debit, as Checkout asks for it when the customer enters
    it by hand (https://docs.stripe.com/payments/ach-direct-debit/accept-a-payment), with the
    mandate the customer accepts."""

    holder_name = forms.CharField(label="Account holder", max_length=100)
    routing_number = forms.CharField(
        label="Routing number",
        max_length=12,
        widget=forms.TextInput(attrs={"inputmode": "numeric", "placeholder": "110000000"}),
    )
    account_number = forms.CharField(
        label="Account number",
        max_length=20,
        widget=forms.TextInput(attrs={"inputmode": "numeric", "placeholder": "000123456789"}),
    )
    mandate = forms.BooleanField(
        label="I authorize Kilo Billing to debit this account for the amount above, once.",
    )

    def bank_account(self) -> BankAccount:
        return BankAccount(
            routing_number=self.cleaned_data["routing_number"],
            account_number=self.cleaned_data["account_number"],
            holder_name=self.cleaned_data["holder_name"],
        )
