from typing import Any

from django import forms

from billing.models import BillingProfile
from payments.tax_ids import TaxIdInvalid, tax_id_for


class BillingDetailsForm(forms.ModelForm):
    class Meta:
        model = BillingProfile
        fields = (
            "company_name",
            "billing_email",
            "address_line1",
            "address_line2",
            "city",
            "postal_code",
            "state",
            "country",
            "tax_id",
        )
        labels = {
            "company_name": "Company name",
            "billing_email": "Billing email",
            "address_line1": "Address",
            "address_line2": "Address (line 2)",
            "postal_code": "Postal code",
            "state": "State or region",
            "country": "Country code",
            "tax_id": "Tax ID",
        }
        error_messages = {
            "country": {"max_length": "Use the two-letter country code, e.g. DE or US."},
        }
        help_texts = {
            "billing_email": "Invoices and receipts go here; empty: the owner's email.",
            "country": "Two letters, ISO 3166, e.g. DE or US.",
            "tax_id": "With its country's prefix where it has one, e.g. DE123456789, "
            "GB123456789, CHE-123.456.789 MWST or (US EIN) 12-3456789; shown on invoices.",
        }

    def clean_country(self) -> str:
        country: str = self.cleaned_data["country"].strip().upper()
        if country and (len(country) != 2 or not country.isalpha()):
            raise forms.ValidationError("Use the two-letter country code, e.g. DE or US.")
        return country

    def clean_tax_id(self) -> str:
        tax_id: str = " ".join(self.cleaned_data["tax_id"].split()).upper()
        return tax_id

    def clean(self) -> dict[str, Any]:
        """A tax ID is checked against its country's kinds of tax ID (Stripe's tax_id_type) and
        kept in the form Stripe expects."""
        cleaned = super().clean() or {}
        tax_id, country = cleaned.get("tax_id"), cleaned.get("country", "")
        if tax_id and "country" not in self.errors:
            try:
                cleaned["tax_id"] = tax_id_for(country=country, value=tax_id).value
            except TaxIdInvalid as invalid:
                self.add_error("tax_id", invalid.message)
        return cleaned
