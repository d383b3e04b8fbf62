from django import forms

from billing.models import BillingProfile


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
            "tax_id": "EU VAT number, e.g. DE123456789; shown on invoices.",
        }

    def clean_country(self) -> str:
        country: str = self.cleaned_data["country"].strip().upper()
        if country and (len(country) != 2 or not country.isalpha()):
            raise forms.ValidationError("Use the two-letter country code, e.g. DE or US.")
        return country

    def clean_tax_id(self) -> str:
        tax_id: str = self.cleaned_data["tax_id"].replace(" ", "").upper()
        if tax_id and not tax_id.isalnum():
            raise forms.ValidationError("Use letters and digits only, e.g. DE123456789.")
        return tax_id
