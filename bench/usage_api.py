"""`POST /api/usage` through `make serve` against the raw debit transaction sent by pgbench.

One hot organization account (built through the services), debited at 1, 4 and 16 clients by:

- **raw**: pgbench (`-M prepared`) sending the plain multi-statement transaction the product's
  debit replaces: BEGIN; the ledger entry in the `usage` namespace; the usage record (the
  analytics rollup follows by its trigger); the conditional `UPDATE credits_creditaccount SET
  balance = balance - cost WHERE id = … AND balance >= cost`; COMMIT. Its column lists are
  checked against the models before anything runs;
- **function**: pgbench calling the product's one-round-trip debit, `credits_usage_debit(...)`,
  with the arguments the API passes (token, organization, context versions), for reference;
- **http:<workload>**: wrk against `make serve` (the production server as deployed, DEBUG off)
  with a Lua script from bench/wrk/ sending unique request_ids and counting the answers.

The slices alternate (raw, function, HTTP, raw, function, HTTP, ...) so that all meet the same
background load. Reported per client count: accepted debits/s, p50 and p99, errors, HTTP ÷ raw,
and the CPU each party used (gunicorn, postgres, the load generator, the rest of the machine);
then the targets, MISSED with the figure where one is missed. Exit status 1 on a money error:
balance ≠ Σ ledger, usage rows ≠ accepted debits, a failed request or transaction, the server
dying. A missed speed target does not fail the run (the figures depend on the machine).

Alone: .venv/bin/python bench/usage_api.py [--duration 5] [--rounds 2] [--clients 1,4,16]
Uses kb_bench and Redis DB 5 (or BENCH_DATABASE, BENCH_REDIS_URL), port BENCH_PORT (8765);
results in bench/results/usage_api.json.
"""

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common, serve

HOST = serve.HOST
WRK_DIR = common.ROOT / "bench" / "wrk"
FUNDS = 10**12  # $1,000,000: far more than any run spends
TOKENS = {
    "input": 1_200,
    "output": 350,
    "cache_read": 0,
    "cache_write": 0,
}  # as bench/wrk/usage.lua
TARGET_RATIO = 0.5  # HTTP ÷ raw at 16 clients
TARGET_RATIO_CLIENTS = 16
TARGET_P99_MS = 50.0
TARGET_KIND = "http:usage"  # the targets are the usage debit's; hold + settle is measured beside it
WARMUP_SECONDS = 2
WRK_TIMEOUT = "10s"
SNAPSHOT_EARLY = 0.3  # seconds before the load generator's end: its processes are still alive


@dataclass(frozen=True)
class Workload:
    """One kind of HTTP operation: a wrk script in bench/wrk/ (built on lib.lua) and the status
    each of its steps answers when all is well, in order. An operation is accepted when its last
    step answers as expected; every other answer is an error. `records` is how many usage
    records one accepted operation leaves (checked after each slice)."""

    name: str
    script: str
    expected: dict[str, int]
    records: int = 1

    @property
    def accepting(self) -> str:
        step = list(self.expected)[-1]
        return f"{step} {self.expected[step]}"


WORKLOADS = {
    workload.name: workload
    for workload in [
        Workload("usage", "usage.lua", {"usage": 201}),
        # A streaming request: its hold, then its settlement (one usage record).
        Workload("hold_settle", "hold_settle.lua", {"hold": 201, "settle": 201}),
    ]
}


# The raw transaction: the columns the product writes (checked against the models), the order
# of the debit the product's function replaced (inserts, then the conditional UPDATE).
LEDGER_COLUMNS = (
    "account_id",
    "amount",
    "kind",
    "source",
    "idempotency_key",
    "created_at",
    "actor_id",
    "reason",
)
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
    "price_id",
    "uncollected",
    "created_at",
)
# pgbench's variables: -D account, member, cost, negcost, price, run (the slice's key prefix),
# token, organization, versions; rid is drawn per transaction.
REQUEST_ID = "CAST(:run AS text) || :rid"
MODEL_SQL = f"'{common.PROVIDER}', '{common.MODEL}'"
TOKENS_SQL = (
    f"{TOKENS['input']}, {TOKENS['output']}, {TOKENS['cache_read']}, {TOKENS['cache_write']}"
)
RAW_SCRIPT = f"""\\set rid random(1, 9223372036854775806)
BEGIN;
INSERT INTO credits_ledgerentry ({", ".join(LEDGER_COLUMNS)})
VALUES (:account, :negcost, 'usage', 'usage', {REQUEST_ID}, now(), :member, '')
RETURNING id AS entry \\gset
INSERT INTO credits_usagerecord ({", ".join(USAGE_COLUMNS)})
VALUES (:entry, :account, :member, {REQUEST_ID}, {MODEL_SQL}, '', {TOKENS_SQL}, :cost, :price, 0,
    now());
UPDATE credits_creditaccount SET balance = balance - :cost
WHERE id = :account AND balance - held >= :cost RETURNING balance \\gset
COMMIT;
"""  # noqa: S608 - the columns are constants; values are pgbench variables
# \\gset fails the transaction when the UPDATE matches no row (too little balance): it is then
# an error, never a debit without its money.
FUNCTION_ARGUMENTS = (
    "p_account bigint, p_user bigint, p_token bigint, p_organization uuid, p_versions bigint[], "
    "p_request_id text, p_cost bigint, p_price bigint, p_provider text, p_model text, "
    "p_project text, "
    "p_input bigint, p_output bigint, p_cache_read bigint, p_cache_write bigint, "
    "p_now timestamp with time zone, p_at timestamp with time zone, OUT o_outcome text, "
    "OUT o_entry_id bigint, OUT o_balance bigint, OUT o_cost bigint, OUT o_topup_due boolean, "
    "OUT o_alert_due boolean"
)
FUNCTION_SCRIPT = f"""\\set rid random(1, 9223372036854775806)
SELECT o_outcome FROM credits_usage_debit(:account, :member, :token,
    CAST(:organization AS uuid), CAST(:versions AS bigint[]), {REQUEST_ID}, :cost, :price,
    {MODEL_SQL},
    '', {TOKENS_SQL}, now(), NULL);
"""  # noqa: S608 - constants; values are pgbench variables
SCRIPTS = {"raw": RAW_SCRIPT, "function": FUNCTION_SCRIPT}


def _drift_check() -> None:
    """The raw transaction writes every column the models have, and the product's function takes
    the arguments sent here: otherwise the comparison measures something else."""
    from django.db import connection

    from credits.models import LedgerEntry, UsageRecord

    for model, columns in ((LedgerEntry, LEDGER_COLUMNS), (UsageRecord, USAGE_COLUMNS)):
        actual = {f.column for f in model._meta.concrete_fields if not f.primary_key}
        if actual != set(columns):
            raise SystemExit(
                f"bench: {model._meta.db_table} has columns {sorted(actual)}; the raw debit in "
                f"bench/usage_api.py writes {sorted(columns)}. Update LEDGER_COLUMNS / "
                f"USAGE_COLUMNS and the raw transaction."
            )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_function_identity_arguments(oid) FROM pg_proc "
            "WHERE proname = 'credits_usage_debit'"
        )
        found = [row[0] for row in cursor.fetchall()]
    if found != [FUNCTION_ARGUMENTS]:
        raise SystemExit(
            f"bench: credits_usage_debit takes ({'; '.join(found) or 'no such function'}), "
            f"bench/usage_api.py calls it with ({FUNCTION_ARGUMENTS}): update FUNCTION_SCRIPT."
        )


@dataclass(frozen=True)
class Debit:
    """What every debit of the run is: its cost from the price catalogue, and the arguments the
    API passes to the product's function (from the member's spend context)."""

    cost: int
    price_id: int
    token_id: int
    versions: tuple[int, int]


def _debit_for(world: common.World) -> Debit:
    from uuid import UUID

    from credits.pricing import price_in_force, usage_cost
    from credits.spend import spend_context_read, token_hash

    price = price_in_force(provider=common.PROVIDER, model_id=common.MODEL)
    if price is None:
        raise SystemExit(f"bench: no price for {common.PROVIDER}/{common.MODEL}")
    cost = usage_cost(
        price,
        input_tokens=TOKENS["input"],
        output_tokens=TOKENS["output"],
        cache_read_tokens=TOKENS["cache_read"],
        cache_write_tokens=TOKENS["cache_write"],
    )
    context = spend_context_read(
        digest=token_hash(world.token), organization_id=UUID(world.organization_id)
    )
    if context is None or context.refusal() is not None or context.account_id is None:
        raise SystemExit("bench: the benchmark member may not spend the organization's credits")
    return Debit(cost=cost, price_id=price.pk, token_id=context.token_id, versions=context.versions)


def _usage_records(account_id: int) -> int:
    from credits.models import UsageRecord

    return UsageRecord.objects.filter(account_id=account_id).count()


def _settled_records(account_id: int) -> int:
    """The account's usage records once requests cut off by the load generator's stop have
    finished in the server (bounded)."""
    count = _usage_records(account_id)
    for _ in range(50):
        time.sleep(0.1)
        again = _usage_records(account_id)
        if again == count:
            return count
        count = again
    return count


# One timed slice


@dataclass
class Run:
    """The world a slice runs against."""

    world: common.World
    debit: Debit
    server: serve.Server
    seconds: int
    tmp: Path


def _classify(server: serve.Server) -> Callable[[int, common.ProcessTicks], str]:
    me = os.getpid()

    def classify(pid: int, process: common.ProcessTicks) -> str:
        if server.owns(process):
            return "gunicorn"
        if process.ppid == me and process.comm in {"wrk", "pgbench"}:
            return process.comm
        if pid == me:
            return "bench"
        return common.classify_common(pid, process)

    return classify


def _timed(
    command: list[str], *, cwd: Path, seconds: int, run: Run
) -> tuple[int, str, str, dict[str, float], dict[str, float]]:
    """Run the load generator; CPU is measured from its start to just before its end, while
    everything it started is still alive. Returns its exit status, output, cores and the
    database connections' states."""
    out_path, err_path = run.tmp / "out.txt", run.tmp / "err.txt"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        before = common.cpu_snapshot()
        with common.SessionSampler() as sessions:
            process = subprocess.Popen(  # noqa: S603 - fixed commands
                command, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL
            )
            try:
                snapshot_at = time.monotonic() + max(seconds - SNAPSHOT_EARLY, 0.5)
                while time.monotonic() < snapshot_at and process.poll() is None:
                    time.sleep(0.05)
                after = common.cpu_snapshot()
                status = process.wait(timeout=seconds + 120)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait(timeout=10)
    cores = common.cpu_usage(before, after, _classify(run.server))
    return status, out_path.read_text(), err_path.read_text(), cores, sessions.averages()


def pgbench_slice(
    kind: str,
    clients: int,
    run: Run,
    *,
    seconds: int | None = None,
    transactions: int | None = None,
) -> dict[str, Any]:
    """`kind` (raw or function) sent by pgbench with `clients` connections, for `seconds` or
    `transactions` per client."""
    prefix = f"{kind}-{clients}-{secrets.token_hex(4)}-"
    script = run.tmp / f"{kind}.sql"
    script.write_text(SCRIPTS[kind])
    logs = run.tmp / "pgbench-log"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir()
    world, debit = run.world, run.debit
    variables = {
        "account": world.account_id,
        "member": world.member_id,
        "cost": debit.cost,
        "negcost": -debit.cost,
        "price": debit.price_id,
        "run": prefix,
        "token": debit.token_id,
        "organization": world.organization_id,
        "versions": "{{{},{}}}".format(*debit.versions),
    }
    length = ["-t", str(transactions)] if transactions else ["-T", str(seconds or run.seconds)]
    command = [
        "pgbench",
        "--no-vacuum",
        "--protocol=prepared",
        f"--client={clients}",
        f"--jobs={min(clients, 2)}",
        *length,
        f"--file={script}",
        "--log",
        f"--log-prefix={logs / 'tx'}",
        *(f"--define={name}={value}" for name, value in variables.items()),
        common.DATABASE_URL,
    ]
    records_before = _usage_records(world.account_id)
    status, out, err, cores, sessions = _timed(
        command, cwd=run.tmp, seconds=seconds or run.seconds, run=run
    )
    made = _usage_records(world.account_id) - records_before
    processed = _number(r"number of transactions actually processed: (\d+)", out)
    failed = _number(r"number of failed transactions: (\d+)", out)
    tps = _float(r"tps = ([\d.]+) \(without initial connection time\)", out)
    latencies: list[tuple[float, float]] = []
    log_failures = 0
    for path in logs.iterdir():
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[2].isdigit():
                latencies.append((int(fields[2]) / 1000, 1.0))
            else:
                log_failures += 1
    seconds_measured = processed / tps if tps else 0.0
    # Every transaction pgbench counted left exactly one usage record: anything else is a debit
    # refused (the function's 'insufficient', 'stale', ...) or money moved without its record.
    problems = []
    if status:
        problems.append(f"pgbench exited {status}: {_last_lines(err or out)}")
    if failed or log_failures:
        problems.append(f"{max(failed, log_failures)} transaction(s) failed")
    if made != processed:
        problems.append(f"{processed} transactions left {made} usage records")
    return _slice(
        kind=kind,
        clients=clients,
        ops=min(made, processed),
        seconds=seconds_measured,
        errors=(processed - made if made < processed else 0) + max(failed, log_failures),
        problems=problems,
        latencies=latencies,
        cores=cores,
        sessions=sessions,
        detail={"processed": processed, "usage_records_made": made, "key_prefix": prefix},
    )


def http_slice(
    workload: Workload, clients: int, run: Run, *, seconds: int | None = None
) -> dict[str, Any]:
    """`workload` sent by wrk with `clients` keep-alive connections to `make serve`."""
    prefix = f"http-{workload.name}-{clients}-{secrets.token_hex(4)}"
    length = seconds or run.seconds
    command = [
        "wrk",
        f"--threads={min(clients, 2)}",
        f"--connections={clients}",
        f"--duration={length}s",
        f"--timeout={WRK_TIMEOUT}",
        f"--script={workload.script}",
        f"http://{HOST}:{run.server.port}",
        "--",
        prefix,
        run.world.token,
        run.world.organization_id,
    ]
    records_before = _usage_records(run.world.account_id)
    status, out, err, cores, sessions = _timed(command, cwd=WRK_DIR, seconds=length, run=run)
    made = _settled_records(run.world.account_id) - records_before
    line = next((text for text in out.splitlines() if text.startswith("BENCH ")), None)
    if status or line is None:
        raise SystemExit(f"bench: wrk exited {status}: {_last_lines(err or out)}")
    report = json.loads(line[len("BENCH ") :])
    statuses: dict[str, int] = report["statuses"]
    expected = {f"{step} {code}" for step, code in workload.expected.items()}
    accepted = statuses.get(workload.accepting, 0)
    socket_errors = sum(report["socket_errors"].values())
    wrong = {key: n for key, n in statuses.items() if key not in expected}
    in_flight = report["sent"] - report["answered"]
    problems = []
    if wrong:
        problems.append(f"unexpected answers {wrong}")
    if socket_errors:
        problems.append(f"socket errors {report['socket_errors']}")
    # Requests cut off when wrk stopped may have completed in the server: at most one per client.
    low, high = accepted * workload.records, (accepted + in_flight) * workload.records
    if not low <= made <= high:
        problems.append(
            f"{accepted} accepted operations and {in_flight} in flight at the stop left {made} "
            f"usage records (expected {low}–{high})"
        )
    grid = report["latency_grid_us"]
    weight = report["responses"] / len(grid) if grid else 0.0
    return _slice(
        kind=f"http:{workload.name}",
        clients=clients,
        ops=accepted,
        seconds=report["duration_us"] / 1e6,
        errors=sum(wrong.values()) + socket_errors + (0 if low <= made <= high else 1),
        problems=problems,
        latencies=[(value / 1000, weight) for value in grid],
        cores=cores,
        sessions=sessions,
        detail={
            "statuses": statuses,
            "sent": report["sent"],
            "answered": report["answered"],
            "in_flight_at_stop": in_flight,
            "usage_records_made": made,
            "socket_errors": report["socket_errors"],
            "key_prefix": prefix,
        },
    )


def _slice(
    *,
    kind: str,
    clients: int,
    ops: int,
    seconds: float,
    errors: int,
    problems: list[str],
    latencies: list[tuple[float, float]],
    cores: dict[str, float],
    sessions: dict[str, float],
    detail: dict[str, Any],
) -> dict[str, Any]:
    return {
        "kind": kind,
        "clients": clients,
        "ops": ops,
        "duration_s": round(seconds, 3),
        "rate": round(ops / seconds, 1) if seconds else 0.0,
        "p50_ms": _percentile(latencies, 0.50),
        "p99_ms": _percentile(latencies, 0.99),
        "errors": errors,
        "problems": problems,
        "cpu_cores": cores,
        "sessions": sessions,
        "latencies": latencies,
        **detail,
    }


def _percentile(points: list[tuple[float, float]], fraction: float) -> float | None:
    """Nearest rank over weighted points (value in ms, weight): pgbench's latencies weigh 1
    each; wrk's come as 1,000 quantiles of its run, each weighing a thousandth of its answers."""
    total = sum(weight for _, weight in points)
    if not total:
        return None
    rank, seen = fraction * total, 0.0
    for value, weight in sorted(points):
        seen += weight
        if seen >= rank - 1e-9:
            return round(value, 2)
    return round(max(points)[0], 2)


def _number(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    return int(found.group(1)) if found else 0


def _float(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def _last_lines(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# The figures


LOAD_GENERATORS = ("wrk", "pgbench")
OURS = ("gunicorn", "postgres", *LOAD_GENERATORS, "redis", "kernel", "postgres_shared", "bench")


def combine(slices: list[dict[str, Any]]) -> dict[str, Any]:
    """One figure from the rounds of one (kind, clients): the rate over their summed time,
    percentiles over every latency, the mean cores per party and CPU ms per accepted debit."""
    seconds = sum(s["duration_s"] for s in slices)
    ops = sum(s["ops"] for s in slices)
    points = [point for s in slices for point in s["latencies"]]
    parties = sorted({name for s in slices for name in s["cpu_cores"]})
    cores = {
        name: round(sum(s["cpu_cores"].get(name, 0.0) for s in slices) / len(slices), 2)
        for name in parties
    }
    per_op = {
        name: round(
            sum(s["cpu_cores"].get(name, 0.0) * s["duration_s"] for s in slices) / ops * 1000, 3
        )
        for name in parties
        if ops and name in OURS
    }
    return {
        "ops": ops,
        "seconds": round(seconds, 2),
        "rate": round(ops / seconds, 1) if seconds else 0.0,
        "slice_rates": [s["rate"] for s in slices],
        "p50_ms": _percentile(points, 0.50),
        "p99_ms": _percentile(points, 0.99),
        "slice_p99_ms": [s["p99_ms"] for s in slices],
        "errors": sum(s["errors"] for s in slices),
        "cpu_cores": cores,
        "cpu_ms_per_debit": per_op,
        "cpu_ms_per_debit_total": round(sum(per_op.values()), 3),
        "sessions": {
            name: round(sum(s["sessions"].get(name, 0.0) for s in slices) / len(slices), 2)
            for name in sorted({n for s in slices for n in s["sessions"]})
        },
    }


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per slice (2–60)")
    parser.add_argument("--rounds", type=int, default=2, help="slices per kind and client count")
    parser.add_argument("--clients", default="1,4,16", help="comma-separated client counts")
    parser.add_argument(
        "--workloads", default=",".join(WORKLOADS), help=f"HTTP workloads ({', '.join(WORKLOADS)})"
    )
    args = parser.parse_args()
    seconds = int(min(max(round(args.duration), 2), 60))
    rounds = min(max(args.rounds, 1), 10)
    counts = [min(max(int(n), 1), 64) for n in args.clients.split(",")]
    unknown = [name for name in args.workloads.split(",") if name not in WORKLOADS]
    if unknown:
        raise SystemExit(f"bench: unknown workload(s) {unknown}; known: {list(WORKLOADS)}")
    workloads = [WORKLOADS[name] for name in args.workloads.split(",")]
    port = int(os.environ.get("BENCH_PORT", "8765"))
    for tool, package in (("pgbench", "postgresql"), ("wrk", "wrk")):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench: {tool} is missing (apt-get install {package})")
    signal.signal(signal.SIGTERM, _terminate)

    common.prepare()
    common.django_setup()
    _drift_check()
    world = common.world_create(label="usage-api", funds=FUNDS)
    debit = _debit_for(world)
    machine = {**common.machine(), "busy_before_start": common.machine_load()}
    kinds = ["raw", "function", *(f"http:{w.name}" for w in workloads)]
    print(
        f"usage_api: one hot account; {', '.join(kinds)} alternate in {rounds} slice(s) of "
        f"{seconds} s per client count {counts}; make serve on {HOST}:{port} (DEBUG off); "
        f"{machine['cpus']} CPUs, {machine['busy_before_start']} cores busy with other work "
        f"before the start"
    )
    slices: list[dict[str, Any]] = []
    warm: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="kb-bench-") as tmp,
        serve.Server(port=port) as server,
    ):
        server.wait_ready()
        run = Run(world=world, debit=debit, server=server, seconds=seconds, tmp=Path(tmp))
        # A broken set-up fails here with its answer, not later with statistics.
        _smoke(run)
        for kind in ("raw", "function"):
            warm.append(pgbench_slice(kind, 1, run, transactions=3))
        for workload in workloads:  # every gunicorn thread connected, code and caches warm
            warm.append(http_slice(workload, max(counts), run, seconds=WARMUP_SECONDS))
        for clients in counts:
            for round_ in range(rounds):
                for kind in kinds:
                    if kind.startswith("http:"):
                        result = http_slice(WORKLOADS[kind[5:]], clients, run)
                    else:
                        result = pgbench_slice(kind, clients, run)
                    result["round"] = round_ + 1
                    slices.append(result)
                    _print_slice(result)
                    if not server.alive():
                        break
        crashed = not server.alive()
    return _report(
        world=world,
        debit=debit,
        slices=slices,
        warm=warm,
        counts=counts,
        kinds=kinds,
        machine=machine,
        server=server,
        seconds=seconds,
        crashed=crashed,
    )


def _smoke(run: Run) -> None:
    """One usage request through the server: 201, and the same cost as the raw debit."""
    target = serve.endpoint("usage", "/api/usage", 201, port=run.server.port, world=run.world)
    status, body = serve.Connection(run.server.port).exchange(
        target.request(f"smoke-{secrets.token_hex(4)}")
    )
    if status != 201:
        raise SystemExit(f"bench: POST /api/usage answered {status}: {body[:500]!r}")
    cost = json.loads(body)["cost_microdollars"]
    if cost != run.debit.cost:
        raise SystemExit(
            f"bench: the API charged {cost} microdollars, the raw debit {run.debit.cost}: the "
            f"requests differ (bench/wrk/usage.lua, TOKENS)"
        )


def _print_slice(result: dict[str, Any]) -> None:
    cores = result["cpu_cores"]
    print(
        f"  {result['kind']:12} {result['clients']:>2} clients  {result['rate']:>8.1f}/s  "
        f"p50 {result['p50_ms']!s:>6}  p99 {result['p99_ms']!s:>7} ms  errors {result['errors']}  "
        f"cores: gunicorn {cores.get('gunicorn', 0)} postgres {cores.get('postgres', 0)} "
        f"load {sum(cores.get(n, 0) for n in LOAD_GENERATORS):.2f} other {cores.get('other', 0)}"
    )
    for problem in result["problems"]:
        print(f"    {problem}")


def _speed_targets(
    figures: dict[tuple[str, int], dict[str, Any]],
    ratios: dict[tuple[str, int], float | None],
    http_kinds: list[str],
    counts: list[int],
) -> tuple[dict[str, Any], list[str]]:
    """HTTP ÷ raw at 16 clients and every HTTP p99, each with its figure and verdict."""
    targets: dict[str, Any] = {}
    lines = []
    for kind in http_kinds:
        ratio = ratios.get((kind, TARGET_RATIO_CLIENTS))
        if ratio is None:
            lines.append(f"{kind} ÷ raw at {TARGET_RATIO_CLIENTS} clients: not measured")
        else:
            met = ratio >= TARGET_RATIO
            targets[f"{kind} ÷ raw at {TARGET_RATIO_CLIENTS} clients ≥ {TARGET_RATIO}"] = {
                "figure": ratio,
                "met": met,
            }
            lines.append(
                f"{kind} ÷ raw at {TARGET_RATIO_CLIENTS} clients ≥ {TARGET_RATIO}: {ratio} "
                f"{_verdict(met)}"
            )
        for clients in counts:
            p99 = figures.get((kind, clients), {}).get("p99_ms")
            met = p99 is not None and p99 < TARGET_P99_MS
            name = f"{kind} p99 < {TARGET_P99_MS:g} ms at {clients} client{'s' * (clients > 1)}"
            targets[name] = {
                "figure": p99,
                "met": met,
            }
            lines.append(f"{name}: {p99} ms {_verdict(met)}")
    return targets, lines


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def _report(
    *,
    world: common.World,
    debit: Debit,
    slices: list[dict[str, Any]],
    warm: list[dict[str, Any]],
    counts: list[int],
    kinds: list[str],
    machine: dict[str, Any],
    server: serve.Server,
    seconds: int,
    crashed: bool,
) -> int:
    figures = {
        (kind, clients): combine(
            [s for s in slices if s["kind"] == kind and s["clients"] == clients]
        )
        for kind in kinds
        for clients in counts
        if any(s["kind"] == kind and s["clients"] == clients for s in slices)
    }
    http_kinds = [kind for kind in kinds if kind.startswith("http:")]
    ratios = {
        (kind, clients): round(figures[kind, clients]["rate"] / figures["raw", clients]["rate"], 2)
        if (kind, clients) in figures and figures.get(("raw", clients), {}).get("rate")
        else None
        for kind in ("function", *http_kinds)
        for clients in counts
    }
    print()
    print(
        f"{'clients':>7}  {'debit':14} {'accepted/s':>10} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'errors':>6} {'÷ raw':>6}   CPU ms per debit: {'gunicorn':>8} {'postgres':>8} "
        f"{'load':>6} {'rest':>6} = {'total':>6}   other cores"
    )
    for clients in counts:
        for kind in kinds:
            figure = figures.get((kind, clients))
            if figure is None:
                continue
            per = figure["cpu_ms_per_debit"]
            load = sum(per.get(n, 0) for n in LOAD_GENERATORS)
            rest = sum(per.get(n, 0) for n in ("redis", "kernel", "postgres_shared", "bench"))
            ratio = ratios.get((kind, clients))
            print(
                f"{clients:>7}  {kind:14} {figure['rate']:>10.1f} {figure['p50_ms']!s:>7} "
                f"{figure['p99_ms']!s:>7} {figure['errors']:>6} {'' if ratio is None else ratio:>6}"
                f"   {'':17} {per.get('gunicorn', 0):>8.2f} {per.get('postgres', 0):>8.2f} "
                f"{load:>6.2f} {rest:>6.2f} = {figure['cpu_ms_per_debit_total']:>6.2f}   "
                f"{figure['cpu_cores'].get('other', 0):.2f}"
            )

    # Targets: speed (printed, not failing) and money (failing).
    # Issue 15's targets are the usage debit's; other workloads are figures beside it.
    targets, lines = _speed_targets(
        figures, ratios, [k for k in http_kinds if k == TARGET_KIND], counts
    )
    everything = warm + slices
    errors = sum(s["errors"] for s in everything)
    problems = [
        f"{s['kind']} {s['clients']} clients: {p}" for s in everything for p in s["problems"]
    ]
    check = common.ledger_check(world.account_id, key_prefix="")
    money = {
        "zero errors": (errors == 0, f"{errors} error(s)"),
        "balance == Σ ledger": (
            check["balance_equals_ledger"],
            f"balance {check['balance']}, Σ ledger {check['ledger_sum']}",
        ),
        "usage rows == accepted debits": (
            not any("usage records" in p for p in problems)
            and check["usage_entries"] == check["usage_records"],
            f"{check['usage_records']} usage records, {check['usage_entries']} usage ledger "
            f"entries; per slice: pgbench transactions == records, HTTP accepted ≤ records ≤ "
            f"accepted + in flight at the stop",
        ),
        "rollups count every usage record": (
            check["rollup_counts_every_record"],
            f"{check['rollup_requests']} rollup requests, {check['usage_records_all']} records",
        ),
        "server alive": (not crashed, "make serve died" if crashed else "up to the end"),
    }
    for name, (met, figure) in money.items():
        targets[name] = {"figure": figure, "met": met}
        lines.append(f"{name}: {_verdict(met)} ({figure})")
    print()
    print("targets:")
    for line in lines:
        print(f"  {line}")
    for problem in problems[:20]:
        print(f"  problem: {problem}")
    if crashed:
        print(f"make serve died:\n{server.log_tail()}")
    elif errors:
        print(f"server log {server.log}:\n{server.log_tail()}")
    path = common.results_write(
        "usage_api",
        {
            "machine": machine,
            "server": {
                "command": "make serve (gunicorn --config config/gunicorn.py config.wsgi)",
                "settings": "config.settings, DEBUG=0, BILLING_GATEWAY=sandbox",
            },
            "slice_s": seconds,
            "cost_microdollars": debit.cost,
            "world": common.world_dict(world),
            "figures": [
                {"kind": kind, "clients": clients, "ratio_to_raw": ratios.get((kind, clients)), **f}
                for (kind, clients), f in figures.items()
            ],
            "targets": targets,
            "slices": [_public(s) for s in slices],
            "warm_up": [_public(s) for s in warm],
            "ledger": check,
        },
    )
    print(f"written to {path.relative_to(common.ROOT)}")
    failed = not all(met for met, _ in money.values())
    if not failed:
        server.log.unlink(missing_ok=True)
    return 1 if failed else 0


def _public(slice_: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in slice_.items() if key != "latencies"}


if __name__ == "__main__":
    sys.exit(main())
