"""Reads about the payer: the saved card and the people who hear about money."""

from accounts.models import User
from billing.models import BillingProfile
from organizations.models import Membership, Organization
from organizations.roles import Role
from payments.factory import get_gateway
from payments.gateway import GatewayError, PaymentMethod


def saved_card(
    *, organization: Organization | None = None, user: User | None = None
) -> PaymentMethod | None:
    """The card the gateway charges off-session (the customer's default), or None: no customer
    or no default card yet. Asks the gateway; never creates a customer."""
    profiles = (
        BillingProfile.objects.filter(organization=organization)
        if organization is not None
        else BillingProfile.objects.filter(user=user)
    )
    customer_id = profiles.values_list("gateway_customer_id", flat=True).first()
    if not customer_id:
        return None
    try:
        return get_gateway().payment_method_default(customer_id=customer_id)
    except GatewayError as error:
        if error.missing:
            # Deleted at the gateway, its cards with it; customer.deleted (or the next purchase,
            # billing.services.gateway_customer_with_card) makes the profile forget it.
            return None
        raise


def billing_email(organization: Organization) -> str:
    """The billing email of the organization's billing details ("" when none is set)."""
    email = (
        BillingProfile.objects.filter(organization=organization)
        .values_list("billing_email", flat=True)
        .first()
    )
    return (email or "").lower()


def billing_contacts(organization: Organization) -> list[str]:
    """Who hears about an organization's money: its owners, its billing managers and the
    billing email of its billing details."""
    emails = set(
        Membership.objects.filter(
            organization=organization, role__in=[Role.OWNER, Role.BILLING_MANAGER]
        ).values_list("user__email", flat=True)
    )
    if email := billing_email(organization):
        emails.add(email)
    return sorted(emails)
