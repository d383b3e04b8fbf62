from datetime import date
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator

from invoices.models import Invoice
from invoices.selectors import InvoiceFilters

# The days a filter may name. Wider than any invoice's life, narrow enough that a day's end (the
# next midnight) always exists: 9999-12-31 has none, and used to answer 500.
EARLIEST_DAY = date(2000, 1, 1)
LATEST_DAY = date(2999, 12, 31)
DAY_RANGE = f"Enter a date from {EARLIEST_DAY:%-d %b %Y} to {LATEST_DAY:%-d %b %Y}."


def _day_field(label: str) -> forms.DateField:
    return forms.DateField(
        required=False,
        label=label,
        widget=forms.DateInput(
            attrs={"type": "date", "min": EARLIEST_DAY.isoformat(), "max": LATEST_DAY.isoformat()}
        ),
        validators=[
            MinValueValidator(EARLIEST_DAY, message=DAY_RANGE),
            MaxValueValidator(LATEST_DAY, message=DAY_RANGE),
        ],
    )


class InvoiceFilterForm(forms.Form):
    kind = forms.ChoiceField(
        choices=[("", "All kinds"), *Invoice.Kind.choices], required=False, label="Kind"
    )
    status = forms.ChoiceField(
        choices=[("", "Any status"), *Invoice.Status.choices], required=False, label="Status"
    )
    date_from = _day_field("From")
    date_to = _day_field("To")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            raise forms.ValidationError("The “From” date must be on or before the “To” date.")
        return cleaned

    def filters(self) -> InvoiceFilters:
        """The valid filters, or none at all (the default view) when the input is not valid."""
        if not self.is_valid():
            return InvoiceFilters()
        return InvoiceFilters(
            kind=self.cleaned_data["kind"],
            status=self.cleaned_data["status"],
            date_from=self.cleaned_data["date_from"],
            date_to=self.cleaned_data["date_to"],
        )

    def error_text(self) -> str:
        """The problems in one sentence each, for a message above the default view."""
        problems = []
        for name, errors in self.errors.items():
            label = self.fields[name].label if name in self.fields else ""
            problems += [f"{label}: {error}" if label else str(error) for error in errors]
        return " ".join(problems)

    def querystring(self) -> str:
        """The valid filters as a query string, for pagination and the CSV link."""
        filters = self.filters()
        pairs = {
            "kind": filters.kind,
            "status": filters.status,
            "date_from": filters.date_from.isoformat() if filters.date_from else "",
            "date_to": filters.date_to.isoformat() if filters.date_to else "",
        }
        return urlencode({key: value for key, value in pairs.items() if value})


class PayNowForm(forms.Form):
    """The Pay now page is the confirmation (what is charged, to which card, a "Pay $X now"
    button): no box to tick. The page sends the total it showed, and a different total due by
    then is charged only after the page is shown again. A double submit pays once (the service
    claims each invoice)."""

    total_cents = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)
