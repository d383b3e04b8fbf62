"""A database made by the code before the layers redesign (commit BEFORE_LAYERS, demo seeded)
migrates forward with every balance, ledger row, invoice, membership and usage row intact: the
models that changed app (BillingProfile, LifecycleTransition) kept their tables.

The old code runs from `git archive` of that commit, in its own database, with this virtualenv."""

import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings

BEFORE_LAYERS = "12fe51f3107b29d134b184faf2cd608298894eff"
ROOT = Path(__file__).resolve().parents[2]

# What must survive, read with plain SQL so that both codes' tables can be compared.
SNAPSHOT = {
    "balances": "SELECT id, balance FROM credits_creditaccount ORDER BY id",
    # Keys are not compared: ledger keys moved into namespaces (credits.0005).
    "ledger": "SELECT id, account_id, amount, kind, created_at FROM credits_ledgerentry "
    "ORDER BY id",
    "invoices": "SELECT id, gateway_id, number, status, amount_due, amount_paid, "
    "billing_profile_id FROM invoices_invoice ORDER BY id",
    "billing_profiles": "SELECT id, organization_id, user_id, gateway_customer_id "
    "FROM invoices_billingprofile ORDER BY id",
    "memberships": "SELECT id, organization_id, user_id, role FROM organizations_membership "
    "ORDER BY id",
    "usage": "SELECT count(*), sum(cost) FROM credits_usagerecord",
    "rollups": "SELECT count(*), sum(cost), sum(requests) FROM analytics_dailyusage",
    "seats": "SELECT organization_id, quantity, status FROM seats_seatsubscription ORDER BY 1",
}


def _database_url(name: str) -> str:
    db = settings.DATABASES["default"]
    user = f"{db['USER']}@" if db.get("USER") else ""
    host = db.get("HOST") or ""
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{user}{host}{port}/{name}"


def _admin() -> psycopg.Connection[Any]:
    db = settings.DATABASES["default"]
    return psycopg.connect(
        dbname="postgres",
        user=db.get("USER") or None,
        host=db.get("HOST") or None,
        port=db.get("PORT") or None,
        autocommit=True,
    )


@pytest.fixture
def scratch_database() -> Iterator[str]:
    name = f"kb_migrate_forward_{os.getpid()}"
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    yield name
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _old_code(tmp_path: Path) -> Path:
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", BEFORE_LAYERS],
            check=True,
            capture_output=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"the commit before the layers redesign is not in this checkout: {error}")
    target = tmp_path / "before"
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def _manage(cwd: Path, database: str, settings_module: str, *args: str) -> None:
    environment = {
        **os.environ,
        "DEBUG": "1",
        "DJANGO_SETTINGS_MODULE": settings_module,
        "DATABASE_URL": _database_url(database),
        # Its own Redis database: what the old code queues is never run by anyone.
        "REDIS_URL": "redis://127.0.0.1:6379/13",
        "EMAIL_URL": "consolemail://",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def _snapshot(database: str) -> dict[str, list[tuple[Any, ...]]]:
    db = settings.DATABASES["default"]
    with psycopg.connect(
        dbname=database,
        user=db.get("USER") or None,
        host=db.get("HOST") or None,
        port=db.get("PORT") or None,
    ) as connection:
        return {name: connection.execute(sql).fetchall() for name, sql in SNAPSHOT.items()}


def test_a_database_from_before_the_layers_migrates_forward_intact(
    scratch_database: str, tmp_path: Path
) -> None:
    before_code = _old_code(tmp_path)
    _manage(before_code, scratch_database, "kilo_billing.settings", "migrate", "--noinput")
    _manage(before_code, scratch_database, "kilo_billing.settings", "seed_demo")
    before = _snapshot(scratch_database)
    assert all(before[name] for name in ("ledger", "invoices", "memberships", "billing_profiles"))
    assert before["usage"][0][0] > 100

    _manage(ROOT, scratch_database, "config.settings", "migrate", "--noinput")
    after = _snapshot(scratch_database)
    assert after == before
    # Purchase credits keyed "purchase:<id>" became key "<id>" in the purchase namespace.
    db = settings.DATABASES["default"]
    with psycopg.connect(
        dbname=scratch_database, user=db.get("USER") or None, host=db.get("HOST") or None
    ) as connection:
        keys = connection.execute(
            "SELECT DISTINCT source, idempotency_key ~ '^[0-9]+$' FROM credits_ledgerentry "
            "WHERE kind = 'purchase'"
        ).fetchall()
    assert keys == [("purchase", True)]
    # The new code reads the moved models from their old tables.
    _manage(
        ROOT,
        scratch_database,
        "config.settings",
        "shell",
        "-c",
        "from billing.models import BillingProfile; from dunning.models import "
        "LifecycleTransition; assert BillingProfile.objects.filter(invoices__isnull=False)"
        ".exists(); LifecycleTransition.objects.count()",
    )
    _manage(ROOT, scratch_database, "config.settings", "seed_demo")  # idempotent on old data
    assert _snapshot(scratch_database)["ledger"] == before["ledger"]
