"""What invoices tell the apps above them (the lifecycle), without importing them."""

from django.dispatch import Signal

# Sent by `invoice_sync` inside its transaction after the local copy of an invoice moved
# forward, with `invoice`, `previous_status` and `previous_attempts` (and, when known,
# `previous_error`: the (code, decline code) of the attempt before, `previous_dispute_status`, and
# `repaid` when a repayment settled it). Receivers run in that
# transaction: if one raises, the sync rolls back and the webhook event is retried.
invoice_changed = Signal()
