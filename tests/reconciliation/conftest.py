"""Helpers for the reconciler's tests: healthy books made through the product (the sandbox's
events delivered), damage done behind its back, and `manage.py reconcile --json` read back."""

import json
from io import StringIO
from typing import Any

from django.core.management import call_command
from django.db import connection

from credits.models import CreditAccount, LedgerEntry
from payments.sandbox.models import SandboxEvent
from reconciliation.models import Finding


def reconcile_json(**options: Any) -> dict[str, Any]:
    """`manage.py reconcile --json`: standard output must be exactly one JSON object."""
    out = StringIO()
    call_command("reconcile", json=True, stdout=out, **options)
    text = out.getvalue()
    parsed: dict[str, Any] = json.loads(text)
    assert text.strip() == json.dumps(parsed)
    assert set(parsed) == {"checked", "findings"}
    for finding in parsed["findings"]:
        assert set(finding) == {"kind", "payer", "gateway_id", "local", "state"}
    return parsed


def found(report: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((f["kind"], f["state"]) for f in report["findings"])


def drop_events() -> int:
    """The events the sandbox has not delivered yet never arrive: the product never hears."""
    dropped, _ = SandboxEvent.objects.filter(delivered_at__isnull=True).delete()
    return dropped


def books() -> tuple[Any, ...]:
    """A fingerprint of everything a heal may move: a second run must leave it as it is."""
    return (
        list(Finding.objects.order_by("pk").values_list("pk", "state", "ending")),
        list(LedgerEntry.objects.order_by("pk").values_list("pk", "amount")),
        list(CreditAccount.objects.order_by("pk").values_list("pk", "balance", "held")),
    )


def without_ledger_trigger(sql: str, params: list[Any]) -> None:
    """Raw SQL on the append-only ledger: its trigger (every trigger) paused for this one
    statement, as only a person with the database's superuser could."""
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        try:
            cursor.execute(sql, params)
        finally:
            cursor.execute("SET session_replication_role = DEFAULT")
