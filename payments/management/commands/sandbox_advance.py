from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from payments.gateway import get_gateway
from payments.sandbox import engine


class Command(BaseCommand):
    help = "Move the sandbox gateway's clock forward and run what becomes due (renewals, retries)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=float, default=0)
        parser.add_argument("--hours", type=float, default=0)

    def handle(self, *args: Any, **options: Any) -> None:
        if get_gateway().name != "sandbox":
            raise CommandError("STRIPE_SECRET_KEY is set: the sandbox clock does not apply.")
        seconds = int(options["days"] * 86400 + options["hours"] * 3600)
        if seconds <= 0:
            raise CommandError("Give a positive --days or --hours.")
        now = engine.clock_advance(seconds=seconds)
        done = engine.tick()
        self.stdout.write(f"Sandbox clock now {now:%Y-%m-%d %H:%M} UTC; {done} due step(s) run.")
