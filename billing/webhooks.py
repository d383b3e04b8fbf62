"""customer.* events: who pays. A customer deleted at the gateway is forgotten here."""

from billing.services import gateway_customer_forget
from payments.dispatch import handles
from payments.models import WebhookEvent


@handles("customer.deleted")
def customer_deleted(event: WebhookEvent) -> None:
    """Forget the deleted customer (once: a repeated or late event finds no profile with it,
    also after a new customer was made). The seat subscriptions it had end through seats'
    handler of the same event."""
    customer_id = str(event.object.get("id") or "")
    if customer_id:
        gateway_customer_forget(customer_id=customer_id)
