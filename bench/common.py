"""What the benchmarks share: their own database and Redis DB, the benchmark organization (built
with the product's services), CPU accounting from /proc, percentiles and the results file."""

import contextlib
import json
import math
import multiprocessing
import os
import platform
import queue
import re
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PYTHON = sys.executable

# Never the development or test databases: every benchmark process gets these, whatever the
# caller's DATABASE_URL and REDIS_URL say: kb_bench and Redis DB 5, or BENCH_DATABASE and
# BENCH_REDIS_URL when set (trial runs beside someone else's `make bench`). No Stripe key (the
# sandbox gateway) and no emails.
DATABASE_NAME = os.environ.get("BENCH_DATABASE") or "kb_bench"
if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", DATABASE_NAME):
    raise SystemExit(f"bench: BENCH_DATABASE={DATABASE_NAME!r} is not a plain database name")
DATABASE_URL = f"postgres:///{DATABASE_NAME}"
REDIS_URL = os.environ.get("BENCH_REDIS_URL") or "redis://127.0.0.1:6379/5"
BENCH_ENV = {
    "DATABASE_URL": DATABASE_URL,
    "REDIS_URL": REDIS_URL,
    "STRIPE_SECRET_KEY": "",
    "STRIPE_PUBLISHABLE_KEY": "",
    # Benchmarks run on the sandbox, also with DEBUG off (where it must be chosen explicitly).
    "BILLING_GATEWAY": "sandbox",
    "EMAIL_URL": "dummymail://",
    "LOG_LEVEL": "WARNING",
}
# Development settings for set-up and for the in-process benchmarks (production ones need secrets).
DEV_ENV = {**BENCH_ENV, "DEBUG": "1", "DJANGO_SETTINGS_MODULE": "config.settings"}

# One model from the price catalogue that migrations load.
PROVIDER = "anthropic"
MODEL = "claude-sonnet-4-5"


def prepare() -> None:
    """Create the benchmark database if it is missing, migrate it, and empty the benchmark's Redis
    DB (stale queued tasks and rate-limit counters of earlier runs)."""
    env = {**os.environ, **DEV_ENV}
    steps = [
        [PYTHON, "scripts/ensure_services.py"],
        [PYTHON, "manage.py", "migrate", "--noinput", "--verbosity", "0"],
    ]
    for command in steps:
        done = subprocess.run(command, cwd=ROOT, env=env, check=False, timeout=300)  # noqa: S603
        if done.returncode:
            raise SystemExit(f"bench: `{' '.join(command[1:])}` failed ({done.returncode})")
    import redis

    redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).flushdb()


def django_setup() -> None:
    """Django in this process with development settings on the benchmark database. DEBUG only
    lets the settings load without production secrets: query logging (what DEBUG costs per
    query) is turned off again, so that the ORM is measured as it runs in production."""
    os.environ.update(DEV_ENV)
    sys.path.insert(0, str(ROOT))
    import django
    from django.conf import settings

    django.setup()
    settings.DEBUG = False


@dataclass(frozen=True)
class World:
    """A funded organization with paid seats, and a member who holds one and has an API token."""

    organization_id: str
    account_id: int
    owner_id: int
    member_id: int
    token: str


def world_create(*, label: str, funds: int) -> World:
    """Built through the services, as a customer would get there (see tests/credits/conftest.py):
    organization_create, a member, seats bought with the sandbox test card, a grant, a token."""
    import secrets

    from accounts.models import User
    from billing.services import billing_profile_for, gateway_customer_ensure
    from credits.ledger import ledger_credit
    from credits.services import account_for, api_token_create
    from organizations.models import Membership
    from organizations.roles import Role
    from organizations.services import organization_create
    from payments.sandbox import engine
    from payments.sandbox.models import SandboxCustomer
    from seats.models import SeatPlan
    from seats.selectors import member_has_seat
    from seats.services import seats_purchase

    suffix = f"{int(time.time())}-{secrets.token_hex(3)}"
    owner = User.objects.create_user(email=f"bench-owner-{suffix}@bench.invalid")
    member = User.objects.create_user(email=f"bench-member-{suffix}@bench.invalid")
    organization = organization_create(actor=owner, name=f"Bench {label} {suffix}")
    membership = Membership.objects.create(organization=organization, user=member, role=Role.MEMBER)
    customer_id = gateway_customer_ensure(billing_profile_for(organization=organization))
    customer = SandboxCustomer.objects.get(pk=customer_id)
    if customer.default_payment_method_id is None:
        engine.payment_method_attach(
            customer=customer,
            card=engine.Card(number="4242424242424242", exp_month=12, exp_year=2040, cvc="123"),
        )
    seats_purchase(
        actor=owner,
        organization=organization,
        plan=SeatPlan.objects.get(code="teams"),
        seats=2,
        idempotency_key=f"bench-seats-{organization.pk}",
        success_url="",
        cancel_url="",
    )
    if not member_has_seat(membership=membership):
        raise SystemExit("bench: the seat purchase did not give the member a seat")
    account = account_for(organization=organization)
    ledger_credit(
        account_id=account.pk,
        amount=funds,
        kind="grant",
        source="grant",
        key="bench-funds",
        reason="benchmark",
    )
    _, raw_token = api_token_create(user=member, name="bench")
    return World(
        organization_id=str(organization.pk),
        account_id=account.pk,
        owner_id=owner.pk,
        member_id=member.pk,
        token=raw_token,
    )


def ledger_check(account_id: int, *, key_prefix: str) -> dict[str, Any]:
    """The account's balance against the sum of its ledger, how many usage rows a run made, and
    whether the daily rollups (kept by a trigger) count every usage record once."""
    from django.db.models import Count, Sum

    from analytics.models import DailyUsage
    from credits.models import CreditAccount, LedgerEntry, UsageRecord

    balance = CreditAccount.objects.get(pk=account_id).balance
    ledger = LedgerEntry.objects.filter(account_id=account_id).aggregate(
        total=Sum("amount"), rows=Count("id")
    )
    usage_entries = LedgerEntry.objects.filter(
        account_id=account_id, kind="usage", idempotency_key__startswith=key_prefix
    ).count()
    usage_records = UsageRecord.objects.filter(
        account_id=account_id, request_id__startswith=key_prefix
    ).count()
    all_records = UsageRecord.objects.filter(account_id=account_id).count()
    rollup = DailyUsage.objects.filter(account_id=account_id).aggregate(requests=Sum("requests"))
    return {
        "balance": balance,
        "ledger_sum": ledger["total"] or 0,
        "ledger_rows": ledger["rows"],
        "usage_entries": usage_entries,
        "usage_records": usage_records,
        "balance_equals_ledger": balance == (ledger["total"] or 0),
        "usage_records_all": all_records,
        "rollup_requests": rollup["requests"] or 0,
        "rollup_counts_every_record": all_records == (rollup["requests"] or 0),
    }


# CPU accounting from /proc (Linux), to say where the two cores went during a run.

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class ProcessTicks:
    comm: str
    ppid: int
    ticks: int
    title: str = ""  # PostgreSQL's process title: which database a backend serves
    group: int = 0  # process group: a server started in its own session is one group
    started: int = 0  # clock ticks after boot


@dataclass(frozen=True)
class CpuSnapshot:
    at: float
    busy: int
    total: int
    interrupts: int  # irq + softirq time (loopback TCP, disk), counted as "kernel"
    processes: dict[int, ProcessTicks]
    uptime: int = 0  # clock ticks after boot


def cpu_snapshot() -> CpuSnapshot:
    at = time.monotonic()
    busy = total = interrupts = uptime = 0
    processes: dict[int, ProcessTicks] = {}
    try:
        uptime = int(float(Path("/proc/uptime").read_text().split()[0]) * TICKS)
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        total = sum(fields[:8])
        busy = total - fields[3] - fields[4]  # minus idle and iowait
        interrupts = fields[5] + fields[6]
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            rest = stat[stat.rindex(")") + 2 :].split()
            title = ""
            if comm.startswith("postgres"):
                with contextlib.suppress(OSError):
                    title = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode()
            processes[int(entry.name)] = ProcessTicks(
                comm=comm,
                ppid=int(rest[1]),
                ticks=int(rest[11]) + int(rest[12]),
                title=title,
                group=int(rest[2]),
                started=int(rest[19]),
            )
    except (OSError, ValueError, IndexError):
        pass
    return CpuSnapshot(
        at=at, busy=busy, total=total, interrupts=interrupts, processes=processes, uptime=uptime
    )


def cpu_usage(
    before: CpuSnapshot, after: CpuSnapshot, classify: Callable[[int, ProcessTicks], str]
) -> dict[str, float]:
    """Cores used per group between two snapshots, and the machine's. A process alive at both
    counts its difference; one started in between (a load generator, its database backends)
    counts all it used; one that ended in between is lost to its group (it lands in "other"),
    so take the second snapshot while the load still runs."""
    seconds = max(after.at - before.at, 1e-6)
    groups: dict[str, float] = {}
    for pid, now in after.processes.items():
        then = before.processes.get(pid)
        if then is None or then.comm != now.comm:
            if not before.uptime or now.started < before.uptime:
                continue
            then = replace(now, ticks=0)
        used = (now.ticks - then.ticks) / TICKS / seconds
        if used > 0:
            # An exiting backend has lost its title; the first snapshot still knows it.
            group = classify(pid, now if now.title else then)
            groups[group] = groups.get(group, 0.0) + used
    cpus = os.cpu_count() or 1
    span = max(after.total - before.total, 1)
    busy = (after.busy - before.busy) / span * cpus
    interrupts = (after.interrupts - before.interrupts) / span * cpus
    groups["kernel"] = groups.get("kernel", 0.0) + interrupts
    # "other": everything else the machine did, short-lived processes included (on a shared
    # machine, other people's test runs: they take cores from the benchmark).
    groups.pop("other", None)
    groups["other"] = max(busy - sum(groups.values()), 0.0)
    groups = {name: round(value, 2) for name, value in sorted(groups.items())}
    groups["machine_busy"] = round(busy, 2)
    return groups


def classify_common(pid: int, process: ProcessTicks) -> str:
    """postgres: the backends serving kb_bench; postgres_shared: the server's own processes (WAL
    writer, checkpointer, autovacuum, ...); backends of other databases count as "other"."""
    if process.comm.startswith("postgres"):
        if f" {DATABASE_NAME} " in process.title:
            return "postgres"
        if "[local]" in process.title or re.search(r"\d\(\d+\)", process.title):
            return "other"
        return "postgres_shared"
    if process.comm.startswith("redis"):
        return "redis"
    if process.comm.startswith(("ksoftirqd", "kworker")):
        return "kernel"  # network and disk work, whoever caused it
    return "other"


# Worker processes that start together and run for a fixed time


def fan_out(
    target: Callable[..., None],
    count: int,
    duration: float,
    job: Any,
    *,
    classify: Callable[[int, ProcessTicks], str] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, float], dict[str, float]]:
    """Fork `count` processes running target(index, duration, start, events, job), where start
    is a `Start`. Each puts ("ready", index) once set up and ("result", dict) at the end, then
    calls start.finish(). The clock starts when all are ready. Returns the results, the cores
    used per group meanwhile (the workers themselves are "bench") and what kb_bench's
    connections were doing (SessionSampler)."""
    from django.db import connections

    connections.close_all()  # the children open their own
    context = multiprocessing.get_context("fork")
    events = context.Queue()
    start = Start(go=context.Event(), at=context.Value("d", 0.0), done=context.Event())
    processes = [
        context.Process(target=target, args=(index, duration, start, events, job), daemon=True)
        for index in range(count)
    ]
    results: list[dict[str, Any]] = []
    parent = os.getpid()

    def grouped(pid: int, process: ProcessTicks) -> str:
        if process.ppid == parent:
            return "bench"
        if pid in sessions.pids:
            return "postgres"
        return (classify or classify_common)(pid, process)

    try:
        for process in processes:
            process.start()
        ready = _collect(events, "ready", count, results, timeout=120)
        if ready < count:
            raise SystemExit(f"bench: only {ready} of {count} workers started: {results}")
        start.at.value = time.monotonic() + 0.05
        start.go.set()
        time.sleep(max(start.at.value - time.monotonic(), 0))
        before = cpu_snapshot()
        with SessionSampler() as sessions:
            time.sleep(max(start.at.value + duration - time.monotonic(), 0))
            after = cpu_snapshot()
        _collect(events, "result", count, results, timeout=duration + 60)
    finally:
        start.done.set()
        for process in processes:
            process.join(timeout=10)
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
    if len(results) < count:
        raise SystemExit(f"bench: only {len(results)} of {count} workers reported")
    return results, cpu_usage(before, after, grouped), sessions.averages()


class SessionSampler(threading.Thread):
    """What kb_bench's connections are doing, sampled every 50 ms during a run (from its own
    connection): running a statement, waiting for a lock (the hot account's row), idle in a
    transaction (holding that lock while the application works), or idle."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stopping = threading.Event()
        self.counts: dict[str, int] = {}
        self.samples = 0
        self.pids: set[int] = set()  # kb_bench's backends

    def __enter__(self) -> "SessionSampler":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.join(timeout=5)

    def run(self) -> None:
        import psycopg

        query = (
            "SELECT pid, state, wait_event_type FROM pg_stat_activity WHERE datname = %s "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        try:
            with psycopg.connect(DATABASE_URL, autocommit=True, connect_timeout=2) as connection:
                for _ in range(20 * 120):  # at most two minutes
                    if self.stopping.wait(0.05):
                        break
                    for pid, state, wait in connection.execute(query, [DATABASE_NAME]):
                        self.pids.add(pid)
                        name = "lock wait" if wait == "Lock" else state or "unknown"
                        self.counts[name] = self.counts.get(name, 0) + 1
                    self.samples += 1
        except psycopg.Error:
            pass

    def averages(self) -> dict[str, float]:
        """Mean number of connections in each state."""
        return (
            {name: round(count / self.samples, 2) for name, count in sorted(self.counts.items())}
            if self.samples
            else {}
        )


@dataclass(frozen=True)
class Start:
    go: Any  # multiprocessing Event
    at: Any  # multiprocessing Value("d"): time.monotonic() of the start, the same in every process
    done: Any  # multiprocessing Event: the parent has measured; workers may close and exit

    def finish(self) -> None:
        """Keep this worker (and its database connection) alive until the parent has taken its
        last CPU snapshot, so that what they used is counted (bounded)."""
        self.done.wait(timeout=120)

    def wait(self) -> float:
        """Block until the run starts (bounded); returns the start time."""
        if not self.go.wait(timeout=180):
            raise RuntimeError("the run never started")
        at = float(self.at.value)
        time.sleep(max(at - time.monotonic(), 0))
        return at


def _collect(
    events: Any, kind: str, count: int, results: list[dict[str, Any]], *, timeout: float
) -> int:
    """Wait (bounded) for `count` messages of `kind`; a result while waiting for "ready" means a
    worker died during its set-up, which ends the wait."""
    deadline = time.monotonic() + timeout
    seen = 0
    while seen < count and time.monotonic() < deadline:
        try:
            message, body = events.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            break
        if message == "result":
            results.append(body)
            if kind == "ready":
                break
        if message == kind:
            seen += 1
    return seen


def cpu_seconds() -> float:
    """CPU time of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# Figures


def percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an already sorted sequence."""
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def combine(slices: list[dict[str, Any]]) -> dict[str, Any]:
    """One figure from several timed slices of the same thing (each has ops, duration_s, errors,
    cpu_cores, sessions and its raw `latencies`): the rate over their summed time, percentiles
    over every latency, the means of the CPU shares and of the connection states."""
    seconds = sum(s["duration_s"] for s in slices)
    ops = sum(s["ops"] for s in slices)
    latencies = sorted(value for s in slices for value in s["latencies"])
    groups = sorted({name for s in slices for name in s["cpu_cores"]})
    states = sorted({name for s in slices for name in s["sessions"]})
    cores = {
        name: sum(s["cpu_cores"].get(name, 0.0) for s in slices) / len(slices) for name in groups
    }
    return {
        "ops": ops,
        "seconds": seconds,
        "rate": round(ops / seconds, 1) if seconds else 0.0,
        "slice_rates": [s["rate"] for s in slices],
        "p50_ms": ms(percentile(latencies, 0.50)),
        "p90_ms": ms(percentile(latencies, 0.90)),
        "p99_ms": ms(percentile(latencies, 0.99)),
        "max_ms": ms(latencies[-1] if latencies else None),
        "errors": sum(s["errors"] for s in slices),
        "cpu_cores": {name: round(value, 2) for name, value in cores.items()},
        # CPU milliseconds each party spent per operation (not "other" nor the machine's total).
        "cpu_ms_per_op": {
            name: round(value * seconds / ops * 1000, 2)
            for name, value in cores.items()
            if ops and name not in {"other", "machine_busy", "postgres_shared"}
        },
        "sessions": {
            name: round(sum(s["sessions"].get(name, 0.0) for s in slices) / len(slices), 2)
            for name in states
        },
    }


def public(slice_: dict[str, Any]) -> dict[str, Any]:
    """A slice for the results file: without its raw latencies."""
    return {key: value for key, value in slice_.items() if key != "latencies"}


def machine_load(seconds: float = 1.0) -> float:
    """Cores busy right now with work that is not ours (measured while this process sleeps)."""
    before = cpu_snapshot()
    time.sleep(seconds)
    after = cpu_snapshot()
    cpus = os.cpu_count() or 1
    return round((after.busy - before.busy) / max(after.total - before.total, 1) * cpus, 2)


def machine() -> dict[str, Any]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
        cursor.execute("SHOW synchronous_commit")
        synchronous_commit = cursor.fetchone()[0]
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgres": postgres,
        "synchronous_commit": synchronous_commit,
    }


def results_write(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    body = {"benchmark": name, "finished_at": stamp, **data}
    path.write_text(json.dumps(body, indent=2, default=str) + "\n")
    return path


def world_dict(world: World) -> dict[str, Any]:
    data = asdict(world)
    data.pop("token")
    return data
