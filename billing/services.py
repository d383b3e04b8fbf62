"""Who pays: billing profiles, their gateway customers and the details that appear on invoices."""

import logging

from django.db import transaction

from accounts.models import User
from billing.exceptions import CurrencyMismatch
from billing.models import BillingProfile
from billing.notify import email_after_commit, email_billing_contacts
from organizations.models import Organization
from organizations.roles import Role
from organizations.services import audit_record
from payments.factory import get_gateway
from payments.gateway import Address, CustomerDetails, GatewayError, PaymentMethod
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
    # After a deleted customer, a new key: the old one would answer with the deleted customer.
    after = (
        f"-after-{profile.former_gateway_customer_id}" if profile.former_gateway_customer_id else ""
    )
    customer_id = get_gateway().customer_create(
        details=customer_details(profile),
        metadata={"billing_profile_id": str(profile.pk), **payer},
        idempotency_key=f"billing-profile-{profile.pk}-customer{after}",
    )
    with transaction.atomic():
        BillingProfile.objects.filter(pk=profile.pk, gateway_customer_id="").update(
            gateway_customer_id=customer_id
        )
    profile.refresh_from_db(fields=["gateway_customer_id"])
    return profile.gateway_customer_id


def gateway_customer_forget(*, customer_id: str) -> BillingProfile | None:
    """The gateway customer is gone: deleted in the gateway's dashboard (customer.deleted), or a
    call naming it answered resource_missing before that event came. The profile that has it
    forgets it, so that the next purchase creates a new customer, and says so once (an audit
    event; an email to the owners and billing managers and the billing email, or to the person).
    None when no profile has that customer any more: a repeated or late event changes nothing."""
    with transaction.atomic():
        profile = (
            BillingProfile.objects.select_for_update(of=("self",))
            .select_related("organization", "user")
            .filter(gateway_customer_id=customer_id)
            .exclude(gateway_customer_id="")
            .first()
        )
        if profile is None:
            return None
        profile.gateway_customer_id = ""
        profile.former_gateway_customer_id = customer_id
        profile.save(update_fields=["gateway_customer_id", "former_gateway_customer_id"])
        context = {"customer_id": customer_id}
        subject = "Your saved payment details were removed"
        if profile.organization is not None:
            organization = profile.organization
            audit_record(
                organization=organization,
                actor=None,
                action="billing.customer_deleted",
                target=organization.name,
                customer=customer_id,
            )
            email_billing_contacts(
                organization=organization,
                subject=f"{organization.name}: {subject.lower()}",
                template="emails/billing_customer_deleted.txt",
                context=context,
            )
        elif profile.user is not None:
            logger.info("billing profile %s forgot deleted customer %s", profile.pk, customer_id)
            email_after_commit(
                recipients=[profile.billing_email or profile.user.email],
                subject=subject,
                template="emails/billing_customer_deleted.txt",
                context={**context, "person": profile.user},
            )
    return profile


def gateway_customer_with_card(profile: BillingProfile) -> tuple[str, PaymentMethod | None]:
    """The payer's gateway customer and its saved card, read before a purchase. A customer
    deleted at the gateway before its customer.deleted event arrived answers resource_missing:
    it is forgotten and a new customer made (with no card yet, so the purchase goes to
    Checkout), instead of every purchase failing with "No such customer"."""
    customer_id = gateway_customer_ensure(profile)
    try:
        return customer_id, get_gateway().payment_method_default(customer_id=customer_id)
    except GatewayError as error:
        if not error.missing:
            raise
    gateway_customer_forget(customer_id=customer_id)
    profile.refresh_from_db(fields=["gateway_customer_id", "former_gateway_customer_id"])
    return gateway_customer_ensure(profile), None


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
    try:
        get_gateway().customer_update(customer_id=customer_id, details=customer_details(profile))
    except GatewayError as error:
        if not error.missing:
            raise
        # Deleted at the gateway: a new customer is made with these details.
        gateway_customer_forget(customer_id=customer_id)
        profile.refresh_from_db(fields=["gateway_customer_id", "former_gateway_customer_id"])
        gateway_customer_ensure(profile)
    return profile


def payment_method_update_url(
    *, return_url: str, organization: Organization | None = None, user: User | None = None
) -> str:
    """Where the payer replaces the saved card: the Customer Portal with Stripe, the sandbox's
    card page otherwise. Creates the gateway customer on first use."""
    profile = billing_profile_for(organization=organization, user=user)
    customer_id = gateway_customer_ensure(profile)
    try:
        return get_gateway().payment_method_update_url(
            customer_id=customer_id, return_url=return_url
        )
    except GatewayError as error:
        if not error.missing:
            raise
    # Deleted at the gateway: the card goes on a new customer.
    gateway_customer_forget(customer_id=customer_id)
    profile.refresh_from_db(fields=["gateway_customer_id", "former_gateway_customer_id"])
    return get_gateway().payment_method_update_url(
        customer_id=gateway_customer_ensure(profile), return_url=return_url
    )
