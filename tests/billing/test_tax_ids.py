"""Tax IDs are checked per country and sent with the matching Stripe tax_id_type
(https://docs.stripe.com/billing/customer/tax-ids): a GB, CH or US number is no longer sent as
an EU VAT number that Stripe would refuse."""

from typing import Any

import pytest
from django.urls import reverse

from billing.forms import BillingDetailsForm
from billing.models import BillingProfile
from billing.services import billing_profile_for, customer_details
from payments.sandbox.models import SandboxCustomer
from payments.tax_ids import TaxIdInvalid, tax_id_for, tax_id_valid
from tests.conftest import World, client_for
from tests.invoices.conftest import customer_of

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("country", "typed", "tax_type", "value"),
    [
        ("DE", "de 123 456 789", "eu_vat", "DE123456789"),
        ("GR", "EL123456789", "eu_vat", "EL123456789"),
        ("AT", "ATU12345678", "eu_vat", "ATU12345678"),
        ("NL", "NL123456789B01", "eu_vat", "NL123456789B01"),
        ("ES", "A12345678", "es_cif", "A12345678"),
        ("GB", "GB 123 456 789", "gb_vat", "GB123456789"),
        ("CH", "che-123.456.789 mwst", "ch_vat", "CHE-123.456.789 MWST"),
        ("CH", "CHE123456788", "ch_uid", "CHE-123.456.788"),
        ("US", "12-3456789", "us_ein", "12-3456789"),
        ("CA", "123456789RT0002", "ca_gst_hst", "123456789RT0002"),
        ("AU", "12 345 678 912", "au_abn", "12345678912"),
        ("NO", "123456789MVA", "no_vat", "123456789MVA"),
        ("IN", "12ABCDE3456FGZH", "in_gst", "12ABCDE3456FGZH"),
        ("BR", "01234456543210", "br_cnpj", "01.234.456/5432-10"),
        ("JP", "T1234567891234", "jp_trn", "T1234567891234"),
    ],
)
def test_each_country_gets_its_type(country: str, typed: str, tax_type: str, value: str) -> None:
    matched = tax_id_for(country=country, value=typed)
    assert (matched.type, matched.value) == (tax_type, value)
    assert tax_id_valid(tax_type, value)


@pytest.mark.parametrize(
    ("country", "typed", "message"),
    [
        ("GB", "DE123456789", "looks like GB123456789"),
        ("US", "GB123456789", "looks like 12-3456789"),
        ("DE", "123456789", "looks like DE123456789"),
        ("CH", "CHE-123", "CHE-123.456.789 MWST or CHE-123.456.788"),
        ("", "DE123456789", "Choose the country first"),
        ("ZZ", "123", "cannot be put on invoices"),
        ("DE", "DE" + "1" * 10_000, "looks like"),
        ("DE", "DE12345678\x00", "looks like"),
    ],
)
def test_a_tax_id_that_does_not_fit_its_country_is_refused(
    country: str, typed: str, message: str
) -> None:
    with pytest.raises(TaxIdInvalid, match=message):
        tax_id_for(country=country, value=typed)


def form(**data: Any) -> BillingDetailsForm:
    return BillingDetailsForm(data, instance=BillingProfile())


def test_the_form_keeps_the_value_stripe_expects_and_names_the_problem() -> None:
    good = form(country="ch", tax_id="che 123.456.789 tva")
    assert good.is_valid(), good.errors
    assert good.cleaned_data["tax_id"] == "CHE-123.456.789 TVA"
    wrong = form(country="GB", tax_id="DE123456789")
    assert not wrong.is_valid()
    assert "not a tax ID from GB" in wrong.errors["tax_id"][0]
    nowhere = form(tax_id="DE123456789")
    assert not nowhere.is_valid()
    assert "Choose the country first" in nowhere.errors["tax_id"][0]
    assert form(country="US").is_valid()  # no tax ID at all is fine


def test_a_gb_number_reaches_the_gateway_as_gb_vat(world: World) -> None:
    customer = customer_of(world.org, card=None)
    response = client_for(world.owner).post(
        reverse("org_billing", args=[world.org.pk]),
        {"company_name": "Acme Ltd", "country": "GB", "tax_id": "GB123456789"},
    )
    assert response.status_code == 302
    customer = SandboxCustomer.objects.get(pk=customer.pk)
    assert customer.tax_ids[0]["type"] == "gb_vat"
    refused = client_for(world.owner).post(
        reverse("org_billing", args=[world.org.pk]),
        {"company_name": "Acme Ltd", "country": "GB", "tax_id": "CHE-123.456.789"},
    )
    assert refused.status_code == 400
    assert BillingProfile.objects.get(organization=world.org).tax_id == "GB123456789"


def test_a_tax_id_saved_before_the_check_is_left_off_rather_than_blocking(world: World) -> None:
    profile = billing_profile_for(organization=world.org)
    BillingProfile.objects.filter(pk=profile.pk).update(country="US", tax_id="DE123456789")
    profile.refresh_from_db()
    details = customer_details(profile)
    assert (details.tax_id, details.tax_id_type) == ("", "")
