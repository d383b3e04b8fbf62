import pytest

from billing.services import billing_profile_for, gateway_customer_ensure
from credits.models import CreditAccount
from credits.services import account_for, ledger_credit
from organizations.models import Organization
from payments.sandbox import engine
from payments.sandbox.models import SandboxCustomer
from seats.models import SeatPlan
from seats.services import seats_purchase
from tests.conftest import World
from tests.payments.sandbox_helpers import GOOD


def fund(account: CreditAccount, microdollars: int, key: str = "fund") -> None:
    ledger_credit(
        account_id=account.pk, amount=microdollars, kind="grant", idempotency_key=key, reason="test"
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
