"""What payments tell the apps above them, without importing them."""

from django.dispatch import Signal

# Sent with `invoice` (a payments.gateway.Invoice) by an app that got an invoice in a gateway
# call's answer rather than from a webhook, so that the local copy is made at once instead of
# when the invoice's event arrives.
invoice_fetched = Signal()
