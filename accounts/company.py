"""The company behind the product, as invoices name it: the seller's name, address and VAT ID
(SELLER_NAME, SELLER_ADDRESS, SELLER_VAT_ID), as Stripe prints the account's business details at
the top of its invoices (https://docs.stripe.com/invoicing/taxes/account-tax-ids)."""

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class Seller:
    name: str
    address_lines: list[str]
    vat_id: str


def seller_details() -> Seller:
    """Who sells, from the settings: what every invoice prints as its issuer."""
    lines = [line.strip() for line in str(settings.SELLER_ADDRESS).splitlines() if line.strip()]
    return Seller(str(settings.SELLER_NAME), lines, str(settings.SELLER_VAT_ID))
