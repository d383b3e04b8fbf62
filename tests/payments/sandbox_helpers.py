from payments.gateway import CustomerDetails, Subscription
from payments.sandbox import engine
from payments.sandbox.engine import Card
from payments.sandbox.gateway import SandboxGateway
from payments.sandbox.models import SandboxCustomer

GOOD = Card(number="4242 4242 4242 4242", exp_month=12, exp_year=2040, cvc="123")
FAILS_ON_CHARGE = Card(number="4000 0000 0000 0341", exp_month=12, exp_year=2040, cvc="123")
INSUFFICIENT_FUNDS = Card(number="4000000000009995", exp_month=12, exp_year=2040, cvc="123")
GENERIC_DECLINE = Card(number="4000 0000 0000 0002", exp_month=12, exp_year=2040, cvc="123")
LOST_CARD = Card(number="4000 0000 0000 9987", exp_month=12, exp_year=2040, cvc="123")
EXPIRED_CARD = Card(number="4000 0000 0000 0069", exp_month=12, exp_year=2040, cvc="123")
AUTHENTICATION = Card(number="4000 0027 6000 3184", exp_month=12, exp_year=2040, cvc="123")


def customer(card: Card | None = GOOD, name: str = "Acme Robotics") -> SandboxCustomer:
    gateway = SandboxGateway()
    customer_id = gateway.customer_create(
        details=CustomerDetails(name=name, email="billing@acme.test"),
        metadata={"organization_id": "org-1"},
        idempotency_key=f"customer-{name}-{engine.new_id('k')}",
    )
    record = SandboxCustomer.objects.get(pk=customer_id)
    if card is not None:
        engine.payment_method_attach(customer=record, card=card)
        record.refresh_from_db()
    return record


def seats(record: SandboxCustomer, quantity: int = 5, unit_amount: int = 1800) -> Subscription:
    gateway = SandboxGateway()
    price = gateway.price_ensure(
        lookup_key="teams-monthly", product_name="Teams seat", unit_amount=unit_amount
    )
    return gateway.subscription_create(
        customer_id=record.id,
        price_id=price.id,
        quantity=quantity,
        metadata={"organization_id": "org-1"},
        idempotency_key=f"sub-{engine.new_id('k')}",
    )
