import json
import sys
from contextlib import redirect_stdout
from typing import Any
from uuid import UUID

from django.core.management.base import BaseCommand, CommandError, CommandParser

from organizations.models import Organization
from reconciliation.services import reconcile


class Command(BaseCommand):
    help = (
        "Compare the gateway's books with ours and heal what is safe: every payer and credit "
        "account (the default, and --full: the daily sweep), one organization (--org), or only "
        "the payers with gateway activity since the last run (--recent: the job beat runs every "
        "few minutes)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", type=UUID, help="Only this organization (its id).")
        parser.add_argument(
            "--full", action="store_true", help="Every payer, every account (the default)."
        )
        parser.add_argument(
            "--recent",
            action="store_true",
            help="Only the payers with gateway activity since the last run (the webhook inbox).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Compare only: heal and record nothing."
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help='Print one JSON object: {"checked": N, "findings": [{"kind", "payer", '
            '"gateway_id", "local", "state"}]}.',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        organization = None
        if options["org"] is not None:
            organization = Organization.objects.filter(pk=options["org"]).first()
            if organization is None:
                raise CommandError(f"No organization {options['org']}.")
        if options["recent"] and (options["full"] or organization is not None):
            raise CommandError(
                "--recent checks the payers with recent activity: not with --full or --org."
            )
        # Whatever the run prints on its way (the console email backend writes emails to
        # standard output) goes to standard error: with --json, standard output is the one
        # object that scripts read.
        with redirect_stdout(sys.stderr):
            # By hand, everything is checked unless --recent says otherwise: a difference made
            # behind the product's back leaves no trace in the webhook inbox.
            report = reconcile(
                full=not options["recent"],
                organization=organization,
                dry_run=options["dry_run"],
            )
        if options["json"]:
            self.stdout.write(json.dumps(report.as_json()))
            return
        for finding in report.findings:
            self.stdout.write(
                f"{finding.state:<9} {finding.get_kind_display()}: payer {finding.payer}, "
                f"{finding.gateway_id or '-'} / {finding.local}"
            )
        summary = report.summary()
        self.stdout.write(
            f"Checked {summary['checked']} payer(s): {summary['healed']} healed, "
            f"{summary['open']} open, {summary['explained']} explained"
            + (f", {summary['failed']} could not be read" if summary["failed"] else "")
            + (" (dry run: nothing healed or recorded)" if options["dry_run"] else "")
            + "."
        )
