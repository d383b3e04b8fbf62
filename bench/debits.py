"""Debits per second on ONE hot organization account.

`credits.services.usage_debit` (the service, through the ORM) beside a raw-SQL baseline: plain
psycopg sending the same statements (the two INSERTs, the rollup upsert and the conditional
UPDATE … RETURNING, in
one transaction). Each runs with 1, 4 and 16 worker processes, each with its own connection, for
a fixed time, in slices that alternate between the two (so that both meet the same background
load). Afterwards the account's balance must equal the sum of its ledger.

Alone: .venv/bin/python bench/debits.py [--duration 3] [--rounds 2] [--workers 1,4,16]
Uses the kb_bench database and Redis DB 5 (created and migrated here); results in
bench/results/debits.json.
"""

import argparse
import secrets
import sys
import time
from array import array
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

COST = 1_234  # microdollars per debit
FUNDS = 10**12  # $1,000,000: far more than any run can spend
INPUT_TOKENS, OUTPUT_TOKENS = 1_200, 350
WARMUP_OPS = 3  # per worker, before the clock starts (connection, caches)
MAX_OPS = 2_000_000  # per worker and run: the loop's bound besides its time
MAX_ERRORS = 20  # per worker and run: stop early rather than spin on a broken setup
SERVICE_TARGET = 0.5  # service ≥ 0.5 × raw

# The baseline's statements: the service's conditional UPDATE, and the INSERTs the ORM sends for
# LedgerEntry.objects.create and UsageRecord.objects.create (every column, RETURNING the id).
RAW_DEBIT = """
    UPDATE credits_creditaccount SET balance = balance - %s
    WHERE id = %s AND balance >= %s
    RETURNING balance, auto_topup_enabled, auto_topup_threshold,
              low_balance_threshold, low_balance_alerted
"""
LEDGER_COLUMNS = ("account_id", "amount", "kind", "idempotency_key", "created_at", "actor_id")
LEDGER_COLUMNS_ALL = (*LEDGER_COLUMNS, "reason")
USAGE_COLUMNS = (
    "entry_id",
    "account_id",
    "user_id",
    "request_id",
    "provider",
    "model",
    "project",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost",
    "created_at",
)


def _insert(table: str, columns: tuple[str, ...]) -> str:
    placeholders = ", ".join(["%s"] * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders}) RETURNING id"  # noqa: S608 - fixed names


RAW_LEDGER_INSERT = _insert("credits_ledgerentry", LEDGER_COLUMNS_ALL)
RAW_USAGE_INSERT = _insert("credits_usagerecord", USAGE_COLUMNS)


def _baseline_matches_models() -> None:
    """The baseline must write every column the models have, or it measures something else."""
    from credits.models import LedgerEntry, UsageRecord

    for model, columns in ((LedgerEntry, LEDGER_COLUMNS_ALL), (UsageRecord, USAGE_COLUMNS)):
        actual = {f.column for f in model._meta.concrete_fields if not f.primary_key}
        if actual != set(columns):
            raise SystemExit(
                f"bench: {model.__name__} has columns {sorted(actual)}; the raw baseline in "
                f"bench/debits.py writes {sorted(columns)}: update it"
            )


# One debit, two ways


def _service_debit(account_id: int, user_id: int) -> Callable[[str], None]:
    from accounts.models import User
    from credits.ledger import usage_debit
    from credits.models import CreditAccount

    account = CreditAccount.objects.get(pk=account_id)
    user = User.objects.get(pk=user_id)

    def debit(request_id: str) -> None:
        usage_debit(
            account_id=account.pk,
            user_id=user.pk,
            cost=COST,
            request_id=request_id,
            provider=common.PROVIDER,
            model=common.MODEL,
            input_tokens=INPUT_TOKENS,
            output_tokens=OUTPUT_TOKENS,
        )

    return debit


def _raw_debit(account_id: int, user_id: int) -> Callable[[str], None]:
    import psycopg

    connection = psycopg.connect(common.DATABASE_URL, autocommit=True)

    from analytics.rollups import _ADD_SQL as RAW_ROLLUP_ADD

    def debit(request_id: str) -> None:
        now = datetime.now(UTC)
        with connection.transaction():
            # The service's order: the inserts, the rollup, then the conditional UPDATE.
            entry = connection.execute(
                RAW_LEDGER_INSERT, (account_id, -COST, "usage", request_id, now, user_id, "")
            ).fetchone()
            assert entry is not None
            usage = (
                account_id,
                user_id,
                request_id,
                common.PROVIDER,
                common.MODEL,
                "",
                INPUT_TOKENS,
                OUTPUT_TOKENS,
                0,
                0,
                COST,
                now,
            )
            connection.execute(RAW_USAGE_INSERT, (entry[0], *usage)).fetchone()
            connection.execute(
                RAW_ROLLUP_ADD,
                (
                    account_id,
                    now.date(),
                    user_id,
                    common.PROVIDER,
                    common.MODEL,
                    "",
                    INPUT_TOKENS,
                    OUTPUT_TOKENS,
                    0,
                    0,
                    COST,
                ),
            )
            row = connection.execute(RAW_DEBIT, (COST, account_id, COST)).fetchone()
            if row is None:
                raise RuntimeError("insufficient balance")

    return debit


# Workers


def _worker(
    index: int,
    duration: float,
    start: common.Start,
    events: Any,
    job: tuple[str, str, common.World],
) -> None:
    """Warm up, report ready, debit until the shared deadline, report the counts."""
    impl, key, world = job
    result: dict[str, Any] = {"index": index, "ops": 0, "total": 0, "errors": 0, "error": ""}
    try:
        make = _service_debit if impl == "service" else _raw_debit
        debit = make(world.account_id, world.member_id)
        for n in range(WARMUP_OPS):
            debit(f"{key}-{index}-w{n}")
            result["total"] += 1
        events.put(("ready", index))
        deadline = start.wait() + duration
        cpu_before = common.cpu_seconds()
        latencies = array("d")
        for n in range(MAX_OPS):
            began = time.monotonic()
            if began >= deadline:
                break
            try:
                debit(f"{key}-{index}-{n}")
            except Exception as error:
                result["errors"] += 1
                result["error"] = result["error"] or repr(error)
                if result["errors"] >= MAX_ERRORS:
                    break
                continue
            ended = time.monotonic()
            result["total"] += 1
            if ended <= deadline:
                result["ops"] += 1
                latencies.append(ended - began)
        result["cpu_seconds"] = common.cpu_seconds() - cpu_before
        result["latencies"] = latencies
    except Exception as error:
        result["fatal"] = repr(error)
    events.put(("result", result))
    start.finish()


def run(impl: str, workers: int, world: common.World, duration: float) -> dict[str, Any]:
    """One timed slice: `workers` processes debiting the one account for `duration` seconds."""
    key = f"{impl}-{workers}-{secrets.token_hex(4)}"
    results, cpu, sessions = common.fan_out(_worker, workers, duration, (impl, key, world))
    ops = sum(result["ops"] for result in results)
    return {
        "impl": impl,
        "workers": workers,
        "duration_s": duration,
        "ops": ops,
        "rate": round(ops / duration, 1),
        "debits_made": sum(result["total"] for result in results),
        "errors": sum(result["errors"] for result in results),
        "first_error": next((r["error"] for r in results if r["error"]), ""),
        "fatal": [r["fatal"] for r in results if "fatal" in r],
        "cpu_cores": cpu,
        "sessions": sessions,
        "latencies": [value for result in results for value in result.get("latencies", [])],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per slice (≤ 60)")
    parser.add_argument("--rounds", type=int, default=2, help="slices per implementation")
    parser.add_argument("--workers", default="1,4,16", help="comma-separated worker counts")
    args = parser.parse_args()
    duration = min(max(args.duration, 0.5), 60.0)
    rounds = min(max(args.rounds, 1), 10)
    counts = [min(max(int(n), 1), 64) for n in args.workers.split(",")]

    common.prepare()
    common.django_setup()
    _baseline_matches_models()
    world = common.world_create(label="debits", funds=FUNDS)
    machine = {**common.machine(), "busy_before_start": common.machine_load()}
    print(
        f"debits: one hot account; service and raw alternate in {rounds} slice(s) of "
        f"{duration:g} s per worker count; {machine['cpus']} CPUs, "
        f"{machine['busy_before_start']} cores busy with other work before the start"
    )
    slices: list[dict[str, Any]] = []
    for workers in counts:
        for round_ in range(rounds):
            # Alternate who goes first, so that both meet the same background load.
            for impl in ("service", "raw") if round_ % 2 == 0 else ("raw", "service"):
                result = run(impl, workers, world, duration)
                slices.append(result)
                print(
                    f"  {impl:7} {workers:>2} workers: {result['rate']:>8.1f} debits/s  "
                    f"errors {result['errors']}  cores {result['cpu_cores']}  "
                    f"connections {result['sessions']}"
                )
    return _report(world, slices, counts, duration, machine)


def _report(
    world: common.World,
    slices: list[dict[str, Any]],
    counts: list[int],
    duration: float,
    machine: dict[str, Any],
) -> int:
    figures = {
        (impl, workers): common.combine(
            [s for s in slices if s["impl"] == impl and s["workers"] == workers]
        )
        for impl in ("service", "raw")
        for workers in counts
    }
    ratios = {
        workers: round(figures["service", workers]["rate"] / figures["raw", workers]["rate"], 2)
        if figures["raw", workers]["rate"]
        else None
        for workers in counts
    }
    check = common.ledger_check(world.account_id, key_prefix="")
    made = sum(s["debits_made"] for s in slices)
    check["debits_made"] = made
    check["expected_balance"] = FUNDS - COST * made
    check["ok"] = (
        check["balance_equals_ledger"]
        and check["usage_entries"] == made
        and check["usage_records"] == made
        and check["balance"] == check["expected_balance"]
    )
    failures = [s for s in slices if s["errors"] or s["fatal"]]
    print()
    print(
        f"{'workers':>8} {'service/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'raw/s':>9} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'service/raw':>12}  (target ≥ {SERVICE_TARGET})"
    )
    for workers in counts:
        service, raw, ratio = figures["service", workers], figures["raw", workers], ratios[workers]
        verdict = "met" if ratio is not None and ratio >= SERVICE_TARGET else "MISSED"
        print(
            f"{workers:>8} {service['rate']:>10.1f} {service['p50_ms']!s:>7} "
            f"{service['p99_ms']!s:>7} {raw['rate']:>9.1f} {raw['p50_ms']!s:>7} "
            f"{raw['p99_ms']!s:>7} {ratio!s:>12}  {verdict}"
        )
    print(
        f"ledger: balance {check['balance']} == sum(ledger) {check['ledger_sum']}: "
        f"{check['balance_equals_ledger']}; {made} debits made, {check['usage_entries']} usage "
        f"entries, {check['usage_records']} usage records: {'ok' if check['ok'] else 'WRONG'}"
    )
    path = common.results_write(
        "debits",
        {
            "machine": machine,
            "slice_s": duration,
            "cost_microdollars": COST,
            "world": common.world_dict(world),
            "figures": [
                {"impl": impl, "workers": workers, **figure}
                for (impl, workers), figure in figures.items()
            ],
            "service_over_raw": {str(k): v for k, v in ratios.items()},
            "target_service_over_raw": SERVICE_TARGET,
            "target_met": all(v is not None and v >= SERVICE_TARGET for v in ratios.values()),
            "slices": [common.public(s) for s in slices],
            "ledger": check,
        },
    )
    print(f"written to {path.relative_to(common.ROOT)}")
    if failures:
        first = failures[0]
        print(f"debits: {len(failures)} slice(s) failed: {first['first_error'] or first['fatal']}")
    return 0 if check["ok"] and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
