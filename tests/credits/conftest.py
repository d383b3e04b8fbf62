from datetime import date, datetime
from typing import Any

import pytest

from billing.services import billing_profile_for, gateway_customer_ensure
from credits.ledger import Debit, ledger_credit
from credits.models import CreditAccount, ModelPrice
from credits.services import Tokens, account_for, usage_record
from organizations.models import Organization
from payments import factory
from payments.sandbox import engine
from payments.sandbox.models import SandboxCustomer
from payments.stripe_gateway import StripeGateway
from seats.models import SeatPlan
from seats.services import seats_purchase
from tests.conftest import World
from tests.credits.stripe_account import StripeAccount
from tests.payments.sandbox_helpers import GOOD


def fund(account: CreditAccount, microdollars: int, key: str = "fund") -> None:
    ledger_credit(
        account_id=account.pk,
        amount=microdollars,
        kind="grant",
        source="grant",
        key=key,
        reason="test",
    )


def seat_everyone(organization: Organization, actor, seats: int = 10) -> None:  # type: ignore[no-untyped-def]
    """A paid Teams subscription with room for everyone, bought with a saved test card."""
    customer_id = gateway_customer_ensure(billing_profile_for(organization=organization))
    customer = SandboxCustomer.objects.get(pk=customer_id)
    if customer.default_payment_method_id is None:
        engine.payment_method_attach(customer=customer, card=GOOD)
    seats_purchase(
        actor=actor,
        organization=organization,
        plan=SeatPlan.objects.get(code="teams"),
        seats=seats,
        idempotency_key=f"test-seats-{organization.pk}",
        success_url="http://testserver/",
        cancel_url="http://testserver/",
    )


@pytest.fixture
def org_account(world: World) -> CreditAccount:
    return account_for(organization=world.org)


def spend_exactly(
    account: CreditAccount, user, cost: int, request_id: str, at: datetime | None = None
) -> Debit:  # type: ignore[no-untyped-def]
    """Usage through the product's own path (`usage_record`: priced, then follow-ups), at a test
    model priced one microdollar per input token, so the cost is exactly `cost`."""
    ModelPrice.objects.get_or_create(
        provider="test",
        model_id="exact",
        effective_from=date(2000, 1, 1),
        defaults={
            "name": "Priced $1 per million input tokens",
            "input_price": 1_000_000,
            "output_price": 0,
            "source_url": "https://example.test/prices",
            "source_date": date(2000, 1, 1),
        },
    )
    return usage_record(
        account_id=account.pk,
        user_id=user.pk,
        request_id=request_id,
        provider="test",
        model="exact",
        tokens=Tokens(input=cost, output=0),
        at=at,
    )


@pytest.fixture
def stripe_account(settings: Any, monkeypatch: pytest.MonkeyPatch) -> StripeAccount:
    """The product on its Stripe path: `get_gateway()` answers a real StripeGateway whose HTTP
    client is a stateful fake Stripe account (tests/credits/stripe_account.py)."""
    account = StripeAccount()
    settings.BILLING_GATEWAY = "stripe"
    settings.STRIPE_SECRET_KEY = "sk_test_51KiloBillingFakeKey"
    monkeypatch.setattr(
        factory, "_stripe_gateway", lambda key: StripeGateway(api_key=key, http_client=account)
    )
    return account
