import re

from django import forms

from payments.sandbox.engine import Card


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
