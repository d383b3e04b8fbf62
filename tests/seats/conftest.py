"""Seat fixtures: the plans (again, because transactional tests flush the data migration's rows),
a saved card for the world's organization, and a purchase made through the real services."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from accounts.models import User
from billing.services import billing_profile_for, gateway_customer_ensure
from organizations.models import Organization
from payments.sandbox import engine
from payments.sandbox.engine import Card
from payments.sandbox.models import SandboxCustomer
from seats import services
from seats.models import SeatPlan, SeatSubscription
from tests.payments.sandbox_helpers import GOOD

# A 30-day period: 1 November 12:00 UTC to 1 December 12:00 UTC.
START = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
PERIOD_END = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def plans(db: None) -> dict[str, SeatPlan]:
    teams, _ = SeatPlan.objects.get_or_create(
        code="teams", defaults={"name": "Teams", "unit_amount": 1800, "position": 1}
    )
    enterprise, _ = SeatPlan.objects.get_or_create(
        code="enterprise", defaults={"name": "Enterprise", "unit_amount": 7200, "position": 2}
    )
    return {"teams": teams, "enterprise": enterprise}


def save_card(organization: Organization, card: Card = GOOD) -> SandboxCustomer:
    customer_id = gateway_customer_ensure(billing_profile_for(organization=organization))
    customer = SandboxCustomer.objects.get(pk=customer_id)
    engine.payment_method_attach(customer=customer, card=card)
    customer.refresh_from_db()
    return customer


def buy(
    organization: Organization,
    actor: User,
    seats: int = 5,
    *,
    card: Card | None = GOOD,
    plan: str = "teams",
) -> SeatSubscription:
    """Seats bought with a saved card through the purchase service."""
    if card is not None:
        save_card(organization, card)
    services.seats_purchase(
        actor=actor,
        organization=organization,
        plan=SeatPlan.objects.get(code=plan),
        seats=seats,
        idempotency_key=str(uuid.uuid4()),
        success_url="http://testserver/done",
        cancel_url="http://testserver/back",
    )
    return SeatSubscription.objects.get(organization=organization)


def terms_of(preview: object) -> services.PreviewTerms:
    return services.PreviewTerms(
        proration_date=preview.proration_date,  # type: ignore[attr-defined]
        period_end=preview.period_end,  # type: ignore[attr-defined]
        unit_amount=preview.unit_amount,  # type: ignore[attr-defined]
    )


def give_seats(organization: Organization, quantity: int = 10) -> SeatSubscription:
    """Live seats without the gateway, for other apps' tests that only need members to hold a
    seat (e.g. the usage API's 403 no_seat). Seat tests buy through the services instead."""
    now = timezone.now()
    subscription, _ = SeatSubscription.objects.update_or_create(
        organization=organization,
        defaults={
            "gateway_subscription_id": f"sub_test_{organization.pk.hex}",
            "gateway_created": now,
            "status": SeatSubscription.Status.ACTIVE,
            "quantity": quantity,
            "unit_amount": 1800,
            "current_period_start": now,
            "current_period_end": now + timedelta(days=30),
            "activated_at": now,
            "ended_at": None,
        },
    )
    return subscription
