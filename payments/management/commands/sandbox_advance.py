from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from payments.factory import get_gateway
from payments.sandbox import engine

# How far past the moment asked for the clock lands, so that what was due then has run.
PAST_DUE = timedelta(seconds=1)


class Command(BaseCommand):
    help = (
        "Move the sandbox gateway's clock forward and run what becomes due (renewals, retries): "
        "by --days/--hours, or --to the next renewal's charge or the next retry, whatever the "
        "length of the month."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=float, default=0)
        parser.add_argument("--hours", type=float, default=0)
        parser.add_argument(
            "--to",
            choices=["renewal", "retry"],
            help="just past the earliest subscription's next renewal being charged (its period's "
            "end and the hour its draft waits), or the next retry of an open invoice",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if get_gateway().name != "sandbox":
            raise CommandError("STRIPE_SECRET_KEY is set: the sandbox clock does not apply.")
        if options["to"]:
            seconds = self._seconds_to(options["to"])
        else:
            seconds = int(options["days"] * 86400 + options["hours"] * 3600)
        if seconds <= 0:
            raise CommandError("Give a positive --days or --hours, or --to renewal|retry.")
        now = engine.clock_advance(seconds=seconds)
        done = engine.tick()
        self.stdout.write(f"Sandbox clock now {now:%Y-%m-%d %H:%M} UTC; {done} due step(s) run.")

    def _seconds_to(self, moment: str) -> int:
        at = engine.next_renewal_charged_at() if moment == "renewal" else engine.next_retry_at()
        if at is None:
            raise CommandError(f"No {moment} is scheduled in the sandbox.")
        return max(int((at + PAST_DUE - engine.now()).total_seconds()), 1)
