"""The seller on every invoice (issue 23, item 16): its name, address and VAT ID, and a tax line,
on the sandbox's hosted invoice page and PDF and on the Invoices tab's invoice page, as Stripe's
invoices print the account's business details and tax IDs
(https://docs.stripe.com/invoicing/taxes/account-tax-ids). No tax is collected: the line says
$0.00."""

import pytest
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from billing.services import billing_profile_for
from invoices.models import Invoice
from payments.sandbox.gateway import SandboxGateway
from tests.conftest import World, client_for
from tests.payments.sandbox_helpers import customer

SELLER = {
    "SELLER_NAME": "Kilo Code GmbH",
    "SELLER_ADDRESS": "Hauptstraße 1\n10115 Berlin\nGermany",
    "SELLER_VAT_ID": "DE123456789",
}


@pytest.fixture
def sandbox_invoice(db: None) -> Invoice:
    charge = SandboxGateway().charge(
        customer_id=customer().id,
        amount=12_345,
        currency="usd",
        description="Credits",
        metadata={},
        idempotency_key="seller-details",
    )
    return charge.invoice  # type: ignore[return-value]


@override_settings(**SELLER)
def test_the_hosted_invoice_page_names_the_seller_and_the_tax(sandbox_invoice: Invoice) -> None:
    page = Client().get(sandbox_invoice.hosted_invoice_url).content.decode()
    seller = (
        '<address class="seller"><strong>Kilo Code GmbH</strong><br>Hauptstraße 1<br>'
        "10115 Berlin<br>Germany<br>VAT ID: DE123456789</address>"
    )
    assert seller in page
    assert "Billed to" in page
    for label, amount in (("Subtotal", "$123.45"), ("Tax", "$0.00"), ("Total", "$123.45 USD")):
        assert f'<th colspan="2" scope="row">{label}</th><td class="num">{amount}</td>' in page


@override_settings(**SELLER)
def test_the_pdf_names_the_seller_and_the_tax(sandbox_invoice: Invoice) -> None:
    pdf = Client().get(sandbox_invoice.invoice_pdf).content
    for text in (
        "From: Kilo Code GmbH",
        "Hauptstraße 1",
        "10115 Berlin",
        "Germany",
        "VAT ID: DE123456789",
        "Subtotal: $123.45",
        "Tax: $0.00",
        "Total: $123.45 USD",
    ):
        assert f"({text}) Tj".encode("latin-1") in pdf, text
    assert pdf.index(b"(From: Kilo Code GmbH)") < pdf.index(b"(Billed to:")


@override_settings(SELLER_NAME="Kilo Code GmbH", SELLER_ADDRESS="", SELLER_VAT_ID="")
def test_the_seller_without_an_address_or_vat_id_is_its_name(sandbox_invoice: Invoice) -> None:
    page = Client().get(sandbox_invoice.hosted_invoice_url).content.decode()
    assert '<address class="seller"><strong>Kilo Code GmbH</strong></address>' in page
    assert b"VAT ID" not in Client().get(sandbox_invoice.invoice_pdf).content


@override_settings(**SELLER)
def test_the_invoices_tab_names_the_seller_and_the_tax(world: World) -> None:
    invoice = Invoice.objects.create(
        billing_profile=billing_profile_for(organization=world.org),
        gateway_id="in_seller",
        number="KB-000321",
        kind=Invoice.Kind.CREDIT_PURCHASE,
        status=Invoice.Status.PAID,
        amount_due=5_000,
        amount_paid=5_000,
        lines=[{"description": "Credits", "quantity": 1, "amount": 5_000}],
        created=timezone.now(),
        observed_at=timezone.now(),
    )
    page = client_for(world.billing).get(reverse("org_invoice", args=[world.org.pk, invoice.pk]))
    text = page.content.decode()
    assert '<dt>From</dt><dd><address class="seller"><strong>Kilo Code GmbH</strong>' in text
    assert "VAT ID: DE123456789" in text
    assert '<tr><th colspan="3">Tax</th><td class="num">$0.00</td></tr>' in text
