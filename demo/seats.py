"""Demo seats: a paid Teams subscription with empty seats, bought through the real gateway."""

import logging

from billing.services import billing_profile_for, gateway_customer_ensure
from organizations.models import Membership, Organization
from organizations.roles import Role
from payments.factory import get_gateway
from payments.sandbox import engine
from payments.sandbox.models import SandboxCustomer
from seats.models import SeatChange, SeatPlan, SeatSubscription
from seats.plans import seat_plans_ensure
from seats.selectors import occupied_seat_count
from seats.services import seats_purchase

logger = logging.getLogger(__name__)

DEMO_EMPTY_SEATS = 3


def seed_demo_seats(*, organization: Organization) -> None:
    """Give the organization a paid Teams subscription with DEMO_EMPTY_SEATS empty seats, once.
    In sandbox mode the customer gets the 4242 test card; with Stripe keys a customer without a
    saved card is left alone (a purchase would need Checkout)."""
    existing = SeatSubscription.objects.filter(organization=organization).first()
    if existing is not None and existing.is_live:
        return
    owner = (
        Membership.objects.filter(organization=organization, role=Role.OWNER)
        .select_related("user")
        .order_by("created_at")
        .first()
    )
    if owner is None:
        return
    gateway = get_gateway()
    customer_id = gateway_customer_ensure(billing_profile_for(organization=organization))
    if gateway.payment_method_default(customer_id=customer_id) is None:
        if gateway.name != "sandbox":
            logger.warning("demo seats skipped: %s has no saved card", organization.name)
            return
        engine.payment_method_attach(
            customer=SandboxCustomer.objects.get(pk=customer_id),
            card=engine.Card(number="4242424242424242", exp_month=12, exp_year=2040, cvc="123"),
        )
    seat_plans_ensure()
    plan = SeatPlan.objects.get(code="teams")
    attempts = SeatChange.objects.filter(
        organization=organization, kind=SeatChange.Kind.PURCHASE
    ).count()
    seats_purchase(
        actor=owner.user,
        organization=organization,
        plan=plan,
        seats=occupied_seat_count(organization_id=organization.pk) + DEMO_EMPTY_SEATS,
        # A new key per attempt: re-running while the seats are live stops above, and a run after
        # they ended (or after a failed attempt) buys again.
        idempotency_key=f"demo-seats-{organization.pk}-{attempts}",
        success_url="",
        cancel_url="",
    )
