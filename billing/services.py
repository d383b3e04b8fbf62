"""Who pays: billing profiles, their gateway customers and the details that appear on invoices."""

import logging

from django.db import transaction

from accounts.models import User
from billing.exceptions import CurrencyMismatch
from billing.models import BillingProfile
from organizations.models import Organization
from organizations.roles import Role
from organizations.services import audit_record
from payments.factory import get_gateway
from payments.gateway import Address, CustomerDetails
from payments.tax_ids import TaxIdInvalid, tax_id_for

logger = logging.getLogger(__name__)


def billing_profile_for(
    *, organization: Organization | None = None, user: User | None = None
) -> BillingProfile:
    """The payer's profile (an organization's, else a person's), created on first use."""
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
    tax_id, tax_id_type = "", ""
    if profile.tax_id:
        try:
            matched = tax_id_for(country=profile.country, value=profile.tax_id)
        except TaxIdInvalid:
            # Saved before tax IDs were checked per country: left off the gateway customer (the
            # billing details page asks for it again) rather than blocking every charge.
            logger.warning(
                "billing profile %s: tax ID does not fit %r", profile.pk, profile.country
            )
        else:
            tax_id, tax_id_type = matched.value, matched.type
    return CustomerDetails(
        name=name, email=email, address=address, tax_id=tax_id, tax_id_type=tax_id_type
    )


def billing_currency_lock(*, profile: BillingProfile, currency: str) -> None:
    """Charge this payer in `currency` from now on, or refuse (CurrencyMismatch) if it already
    pays in another: one currency per customer."""
    currency = currency.lower()
    if profile.currency == currency:
        return
    with transaction.atomic():
        BillingProfile.objects.filter(pk=profile.pk, currency="").update(currency=currency)
    profile.refresh_from_db(fields=["currency"])
    if profile.currency != currency:
        raise CurrencyMismatch(current=profile.currency, asked=currency)


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


BILLING_DETAIL_FIELDS = (
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


def billing_details_update(
    *, actor: User, organization: Organization, **details: str
) -> BillingProfile:
    """Save the details that appear on invoices, then push them to the gateway customer. The
    gateway is called after the commit: a GatewayError leaves the details saved here."""
    unknown = set(details) - set(BILLING_DETAIL_FIELDS)
    if unknown:
        raise TypeError(f"unknown billing details: {sorted(unknown)}")
    with transaction.atomic():
        profile = billing_profile_for(organization=organization)
        changed = [name for name, value in details.items() if getattr(profile, name) != value]
        for name in changed:
            setattr(profile, name, details[name])
        if changed:
            profile.save(update_fields=changed)
            audit_record(
                organization=organization,
                actor=actor,
                action="billing.details_update",
                target=profile.company_name or organization.name,
                fields=changed,
            )
    customer_id = gateway_customer_ensure(profile)
    get_gateway().customer_update(customer_id=customer_id, details=customer_details(profile))
    return profile


def payment_method_update_url(
    *, return_url: str, organization: Organization | None = None, user: User | None = None
) -> str:
    """Where the payer replaces the saved card: the Customer Portal with Stripe, the sandbox's
    card page otherwise. Creates the gateway customer on first use."""
    customer_id = gateway_customer_ensure(billing_profile_for(organization=organization, user=user))
    return get_gateway().payment_method_update_url(customer_id=customer_id, return_url=return_url)
