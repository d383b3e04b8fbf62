from typing import Any

from django.conf import settings
from django.core.mail import mail_admins
from django.db import transaction
from django.dispatch import receiver
from django.urls import reverse

from invoices.models import Invoice
from invoices.services import invoice_sync
from invoices.signals import invoice_changed
from payments.gateway import Invoice as GatewayInvoice
from payments.signals import invoice_fetched


@receiver(invoice_fetched, dispatch_uid="invoices.invoice_fetched")
def _invoice_fetched(sender: Any, *, invoice: GatewayInvoice, **_: Any) -> None:
    invoice_sync(invoice=invoice)


@receiver(invoice_changed, dispatch_uid="invoices.finalization_failed")
def _finalization_failed(
    sender: Any,
    *,
    invoice: Invoice,
    previous_finalization_error: str | None = None,
    **_: Any,
) -> None:
    """Staff hear once (ADMINS) when the gateway could not finalize an invoice: its cause may be
    ours (tax settings, an address we sent), and nobody is charged until it is fixed. Once per
    failure: the signal comes with the change of the stored error, inside the sync's
    transaction, and the email leaves after its commit."""
    if previous_finalization_error is None or previous_finalization_error:
        return
    if not invoice.not_finalized:
        return
    profile = invoice.billing_profile
    payer = profile.organization.name if profile.organization else f"billing profile {profile.pk}"
    admin_url = settings.SITE_URL + reverse("admin:invoices_invoice_change", args=[invoice.pk])
    subject = f"Invoice {invoice.gateway_id} of {payer} could not be finalized"
    message = (
        f"The payment provider could not finalize invoice {invoice.gateway_id} "
        f"({invoice.get_kind_display()}, {invoice.amount_due} cents) of {payer}.\n\n"
        f"Its error: {invoice.finalization_error_code}: {invoice.finalization_error}\n\n"
        "It stays a draft, overdue, and is not charged until the cause is fixed (the payer's "
        "billing address for tax, or the tax settings) and it is finalized again (the payer's "
        f"Pay now does that).\n\n{admin_url}\n"
    )
    transaction.on_commit(lambda: mail_admins(subject, message))
