"""Billing profiles and their gateway customers."""

from django.db import transaction

from accounts.models import User
from invoices.models import BillingProfile
from kilo_billing.payments.gateway import Address, CustomerDetails, get_gateway
from organizations.models import Organization, Role


def billing_profile_for(
    *, organization: Organization | None = None, user: User | None = None
) -> BillingProfile:
    if organization is not None:
        profile, _ = BillingProfile.objects.get_or_create(organization=organization)
    else:
        assert user is not None
        profile, _ = BillingProfile.objects.get_or_create(user=user)
    return profile


def customer_details(profile: BillingProfile) -> CustomerDetails:
    if profile.organization_id:
        organization = profile.organization
        assert organization is not None
        name = profile.company_name or organization.name
        owner = organization.memberships.filter(role=Role.OWNER).select_related("user").first()
        email = profile.billing_email or (owner.user.email if owner else "")
    else:
        user = profile.user
        assert user is not None
        name, email = (
            profile.company_name or user.name or user.email,
            profile.billing_email or user.email,
        )
    address = None
    if profile.address_line1 or profile.country:
        address = Address(
            line1=profile.address_line1,
            line2=profile.address_line2,
            city=profile.city,
            postal_code=profile.postal_code,
            state=profile.state,
            country=profile.country,
        )
    return CustomerDetails(name=name, email=email, address=address, tax_id=profile.tax_id)


def gateway_customer_ensure(profile: BillingProfile) -> str:
    """The payer's customer at the gateway, created once (the idempotency key is the profile)."""
    if profile.gateway_customer_id:
        return profile.gateway_customer_id
    payer = (
        {"organization_id": str(profile.organization_id)}
        if profile.organization_id
        else {"user_id": str(profile.user_id)}
    )
    customer_id = get_gateway().customer_create(
        details=customer_details(profile),
        metadata={"billing_profile_id": str(profile.pk), **payer},
        idempotency_key=f"billing-profile-{profile.pk}-customer",
    )
    with transaction.atomic():
        BillingProfile.objects.filter(pk=profile.pk, gateway_customer_id="").update(
            gateway_customer_id=customer_id
        )
    profile.refresh_from_db(fields=["gateway_customer_id"])
    return profile.gateway_customer_id
