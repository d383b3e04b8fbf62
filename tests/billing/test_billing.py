"""The payer: who hears about money, and which card the gateway would charge."""

from billing.models import BillingProfile
from billing.selectors import billing_contacts, saved_card
from billing.services import billing_profile_for, gateway_customer_ensure
from payments.sandbox import engine
from payments.sandbox.models import SandboxCustomer
from tests.conftest import World
from tests.payments.sandbox_helpers import GOOD


def test_it_tells_owners_billing_managers_and_the_billing_email(world: World) -> None:
    assert billing_contacts(world.org) == sorted([world.owner.email, world.billing.email])
    BillingProfile.objects.create(organization=world.org, billing_email="AP@Acme.test")
    assert billing_contacts(world.org) == sorted(
        [world.owner.email, world.billing.email, "ap@acme.test"]
    )
    BillingProfile.objects.filter(organization=world.org).update(billing_email=world.owner.email)
    assert billing_contacts(world.org) == sorted([world.owner.email, world.billing.email])


def test_the_saved_card_is_the_customers_default_and_none_without_a_customer(
    world: World,
) -> None:
    assert saved_card(organization=world.org) is None
    assert not BillingProfile.objects.filter(organization=world.org).exists()  # not created
    customer_id = gateway_customer_ensure(billing_profile_for(organization=world.org))
    assert saved_card(organization=world.org) is None
    engine.payment_method_attach(customer=SandboxCustomer.objects.get(pk=customer_id), card=GOOD)
    card = saved_card(organization=world.org)
    assert card is not None
    assert card.last4 == "4242"
    assert saved_card(user=world.outsider) is None
