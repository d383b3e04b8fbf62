"""Billing worlds: Acme with a gateway customer and a seat subscription on the sandbox, and the
helpers that run an action the way production would (commit, deliver, process, send)."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
from django.core import mail

from billing.services import billing_profile_for, gateway_customer_ensure
from organizations.models import Organization
from payments.gateway import Subscription
from payments.sandbox import engine
from payments.sandbox.engine import Card
from payments.sandbox.gateway import SandboxGateway
from payments.sandbox.models import SandboxCustomer
from tests.conftest import settle
from tests.payments.sandbox_helpers import GOOD

T = TypeVar("T")
T0 = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
SEAT_PRICE = 1800

gateway = SandboxGateway()


@pytest.fixture(autouse=True)
def _empty_outbox() -> None:
    mail.outbox.clear()


Step = Callable[..., Any]


@pytest.fixture
def step(django_capture_on_commit_callbacks: Any) -> Step:
    """Run `fn` and commit it, then deliver and process every sandbox event as worker and beat
    would; emails are sent on commit, as in production."""

    def run(fn: Callable[[], T] | None = None) -> T | None:
        with django_capture_on_commit_callbacks(execute=True):
            result = fn() if fn is not None else None
        with django_capture_on_commit_callbacks(execute=True):
            settle()
        return result

    return run


def customer_of(organization: Organization, card: Card | None = GOOD) -> SandboxCustomer:
    profile = billing_profile_for(organization=organization)
    record = SandboxCustomer.objects.get(pk=gateway_customer_ensure(profile))
    if card is not None:
        card_use(record, card)
    return record


def card_use(customer: SandboxCustomer, card: Card) -> None:
    """What the sandbox's payment-method page does with a new card."""
    engine.payment_method_attach(customer=customer, card=card)
    customer.refresh_from_db()


def subscribe(
    customer: SandboxCustomer, organization: Organization, quantity: int = 5
) -> Subscription:
    price = gateway.price_ensure(
        lookup_key="invoices-test-seat", product_name="Teams seat", unit_amount=SEAT_PRICE
    )
    return gateway.subscription_create(
        customer_id=customer.id,
        price_id=price.id,
        quantity=quantity,
        metadata={"organization_id": str(organization.pk)},
        idempotency_key=f"sub-{engine.new_id('k')}",
    )


def subjects() -> list[str]:
    return [message.subject for message in mail.outbox]
