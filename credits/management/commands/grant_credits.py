from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import User
from billing.templatetags.money import microdollars
from credits.exceptions import GrantRefused
from credits.money import MoneyError, cents_to_microdollars, parse_dollars
from credits.services import GRANT_CONFIRMED_MAX, account_for, credits_grant
from organizations.models import Organization


class Command(BaseCommand):
    help = "Grant (or with a negative amount, adjust) credits, with a reason in the ledger."

    def add_arguments(self, parser: CommandParser) -> None:
        holder = parser.add_mutually_exclusive_group(required=True)
        holder.add_argument("--org", help="organization id")
        holder.add_argument("--email", help="a user's email, for their personal account")
        parser.add_argument("--usd", required=True, help="dollars, e.g. 25 or -10.50")
        parser.add_argument("--reason", required=True)
        parser.add_argument("--staff", help="email of the staff member granting (recorded)")
        parser.add_argument(
            "--confirm-large",
            action="store_true",
            help="confirm an amount over $100,000 (at most $10,000,000)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            cents = parse_dollars(
                options["usd"],
                field="amount",
                max_dollars=GRANT_CONFIRMED_MAX // 1_000_000,
                signed=True,
            )
        except MoneyError as error:
            raise CommandError(f"--usd: {error.message}") from None
        amount = cents_to_microdollars(cents)
        if options["org"]:
            organization = Organization.objects.filter(pk=options["org"]).first()
            if organization is None:
                raise CommandError(f"No organization {options['org']}.")
            account = account_for(organization=organization)
        else:
            user = User.objects.filter(email__iexact=options["email"]).first()
            if user is None:
                raise CommandError(f"No user with the email {options['email']}.")
            account = account_for(user=user)
        staff = (
            User.objects.filter(email__iexact=options["staff"]).first()
            if options["staff"]
            else None
        )
        try:
            entry = credits_grant(
                actor=staff,
                account=account,
                amount=amount,
                reason=options["reason"],
                large_confirmed=options["confirm_large"],
            )
        except GrantRefused as refused:
            raise CommandError(refused.message) from None
        account.refresh_from_db()
        self.stdout.write(
            f"{entry.get_kind_display()} of {microdollars(amount)}; "
            f"balance now {microdollars(account.balance)}."
        )
