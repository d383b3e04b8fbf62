from typing import Any

from django.dispatch import receiver

from invoices.services import invoice_sync
from payments.gateway import Invoice
from payments.signals import invoice_fetched


@receiver(invoice_fetched, dispatch_uid="invoices.invoice_fetched")
def _invoice_fetched(sender: Any, *, invoice: Invoice, **_: Any) -> None:
    invoice_sync(invoice=invoice)
