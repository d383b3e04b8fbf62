from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from payments.factory import get_gateway
from payments.gateway import GatewayError
from payments.management.commands.sandbox_refund import invoice_by_number
from payments.sandbox import engine


class Command(BaseCommand):
    help = (
        "A cardholder disputes a paid sandbox invoice's charge (charge.dispute.created, "
        "charge.dispute.funds_withdrawn), or, with --close, its dispute is won or lost "
        "(charge.dispute.closed; charge.dispute.funds_reinstated when won)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--invoice", required=True, help="The invoice number, KB-…")
        parser.add_argument("--close", choices=["won", "lost"], help="Close its open dispute.")
        parser.add_argument(
            "--reason",
            default="fraudulent",
            choices=["fraudulent", "product_not_received", "unrecognized", "duplicate", "general"],
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if get_gateway().name != "sandbox":
            raise CommandError("STRIPE_SECRET_KEY is set: Stripe's disputes come from the bank.")
        try:
            with engine.action(), transaction.atomic():
                invoice = invoice_by_number(options["invoice"])
                if options["close"]:
                    dispute = invoice.disputes.order_by("-created").first()
                    if dispute is None:
                        raise CommandError(f"{invoice.number} has no dispute to close.")
                    engine.dispute_close(dispute, outcome=options["close"])
                    message = f"Dispute {dispute.id} of {invoice.number} closed: {dispute.status}."
                else:
                    dispute = engine.dispute_open(invoice, reason=options["reason"])
                    message = (
                        f"Dispute {dispute.id} opened on {invoice.number}: "
                        f"${dispute.amount / 100:,.2f} withdrawn ({dispute.reason})."
                    )
        except GatewayError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(message)
