from typing import Any

from django.dispatch import receiver

from dunning import lifecycle
from invoices.models import Invoice
from invoices.signals import invoice_changed


@receiver(invoice_changed, dispatch_uid="dunning.invoice_changed")
def _invoice_changed(
    sender: Any,
    *,
    invoice: Invoice,
    previous_status: str,
    previous_attempts: int,
    previous_dispute_status: str | None = None,
    previous_error: tuple[str, str] = ("", ""),
    repaid: bool = False,
    previous_finalization_error: str | None = None,
    **_: Any,
) -> None:
    lifecycle.invoice_changed(
        invoice=invoice,
        previous_status=previous_status,
        previous_attempts=previous_attempts,
        previous_dispute_status=previous_dispute_status,
        previous_error=previous_error,
        repaid=repaid,
        previous_finalization_error=previous_finalization_error,
    )
