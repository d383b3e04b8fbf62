"""The company behind the product, as pages and emails name it: where customers reach support
(SUPPORT_EMAIL, shown wherever a page or an email says "contact support"; held to it by
tests/accounts/test_support_contact.py) and the seller on invoices (SELLER_NAME, SELLER_ADDRESS,
SELLER_VAT_ID). Tags rather than a context processor, so that the 500 page and the emails, rendered
without a request, show them too."""

from django import template
from django.conf import settings
from django.utils.html import format_html
from django.utils.safestring import SafeString

from accounts.company import Seller, seller_details

register = template.Library()


@register.simple_tag
def support_email() -> str:
    """The address as text, for emails."""
    return str(settings.SUPPORT_EMAIL)


@register.simple_tag
def support_link() -> SafeString:
    """The address as a mailto link, for pages."""
    return format_html('<a href="mailto:{0}">{0}</a>', settings.SUPPORT_EMAIL)


@register.inclusion_tag("company/_seller.html")
def seller() -> dict[str, Seller]:
    """The seller's name, address and VAT ID, as the top of an invoice shows them."""
    return {"seller": seller_details()}
