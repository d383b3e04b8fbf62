from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from payments.factory import get_gateway
from payments.gateway import GatewayError
from payments.sandbox import engine
from payments.sandbox.models import SandboxInvoice

MAX_CENTS = 10**12


def invoice_by_number(number: str) -> SandboxInvoice:
    invoice = (
        SandboxInvoice.objects.select_for_update().filter(number=number.strip().upper()).first()
    )
    if invoice is None:
        raise CommandError(f"No sandbox invoice numbered {number!r} (e.g. KB-000123).")
    return invoice


def cents_of(text: str) -> int:
    try:
        amount = Decimal(text.strip())
    except InvalidOperation:
        raise CommandError(f"--amount-usd {text!r} is not an amount of dollars.") from None
    if not amount.is_finite() or amount <= 0:
        raise CommandError("--amount-usd must be a positive amount of dollars.")
    if amount * 100 > MAX_CENTS:
        raise CommandError("--amount-usd is more than any invoice here.")
    if amount != amount.quantize(Decimal("0.01")):
        raise CommandError("--amount-usd takes at most two decimals (whole cents).")
    return int(amount * 100)


class Command(BaseCommand):
    help = (
        "Refund a paid sandbox invoice, all of it or --amount-usd of it, as if done in Stripe's "
        "dashboard: sends charge.refunded and refund.created. --outcome makes the refund change "
        "an hour later by the sandbox clock, as Stripe's live refunds may "
        "(https://docs.stripe.com/testing#refunds): pending then succeeded (refund.updated), "
        "succeeded then failed or pending then failed (refund.failed: the money stays with us)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--invoice", required=True, help="The invoice number, KB-…")
        parser.add_argument("--amount-usd", help="Part of it; default: all that is left.")
        parser.add_argument(
            "--reason",
            default="requested_by_customer",
            choices=engine.REFUND_REASONS,
        )
        parser.add_argument(
            "--outcome",
            choices=list(engine.REFUND_OUTCOMES),
            help="succeeded: at once; pending: pending, succeeded an hour later; failed: "
            "succeeded, failed an hour later; pending-failed: pending, failed an hour later. "
            "Default: as the card that paid makes refunds go (4000 0000 0000 7726 pending, "
            "…5126 failed), else succeeded.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if get_gateway().name != "sandbox":
            raise CommandError("STRIPE_SECRET_KEY is set: refund in Stripe's dashboard instead.")
        amount = cents_of(options["amount_usd"]) if options["amount_usd"] else None
        try:
            with engine.action(), transaction.atomic():
                invoice = invoice_by_number(options["invoice"])
                refund = engine.refund_create(
                    invoice,
                    amount=amount,
                    reason=options["reason"],
                    outcome=options["outcome"] or "",
                )
        except GatewayError as error:
            raise CommandError(str(error)) from error
        later = (
            f"; it becomes {refund.next_status} at {refund.changes_at:%Y-%m-%d %H:%M} UTC"
            if (refund.changes_at)
            else ""
        )
        self.stdout.write(
            f"Refunded ${refund.amount / 100:,.2f} of {invoice.number} ({refund.id}, "
            f"{refund.status}{later}); ${invoice.amount_refunded / 100:,.2f} of "
            f"${invoice.amount_paid / 100:,.2f} refunded in all."
        )
