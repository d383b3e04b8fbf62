"""`POST /api/usage` over HTTP against the production server setup.

gunicorn (sync workers, as in the Dockerfile) serves `config.wsgi` with DEBUG off on
127.0.0.1; 16 concurrent clients post usage with unique request_ids, with the API token of a
member who holds a seat in a funded organization, for a fixed time. Beside it, in the same run and
from the same server, the cheapest JSON view (`POST /bench/ping`, bench/urls.py) as a yardstick;
the two alternate in slices, so that both meet the same background load.

Alone: .venv/bin/python bench/usage_api.py [--duration 5] [--rounds 2] [--clients 16]
       [--gunicorn-workers N]
Uses the kb_bench database and Redis DB 5; results in bench/results/usage_api.json.
"""

import argparse
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

HOST = "127.0.0.1"  # traffic never leaves the machine
FUNDS = 10**12
SOCKET_TIMEOUT = 10.0
MAX_READS = 256  # recv calls per response: ours are a few hundred bytes
MAX_REQUESTS = 500_000  # per client and run, besides the time bound
WARMUP_SECONDS = 2.0
TARGET_RATIO = 0.5  # usage ≥ 0.5 × the minimal view's rate
TARGET_P99_MS = 50.0
BODY = (
    '{{"request_id":"{request_id}","provider":"'
    + common.PROVIDER
    + '","model":"'
    + common.MODEL
    # one line: the fields an extension sends
    + '","input_tokens":1200,"output_tokens":350,"cache_read_tokens":0}}'
)


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    expected: int
    head: bytes  # request line and fixed headers

    def request(self, request_id: str) -> bytes:
        body = BODY.format(request_id=request_id).encode()
        return self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def endpoint(name: str, path: str, expected: int, *, port: int, world: common.World) -> Endpoint:
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {HOST}:{port}\r\n"
        f"Authorization: Bearer {world.token}\r\n"
        f"X-KiloCode-OrganizationId: {world.organization_id}\r\n"
        # What the TLS-terminating proxy in front of production adds.
        "X-Forwarded-Proto: https\r\n"
        "Content-Type: application/json\r\n"
    )
    return Endpoint(name=name, path=path, expected=expected, head=head.encode())


# A small HTTP/1.1 client: far cheaper per request than http.client, so that on two cores the
# load generator takes as little CPU from the server as it can.


class Connection:
    """One connection to 127.0.0.1, kept alive when the server allows it (gunicorn's sync
    workers close it after every response, so then each request connects anew)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.connects = 0

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def exchange(self, data: bytes) -> tuple[int, bytes]:
        reused = self.sock is not None
        try:
            return self._exchange(data)
        except (ConnectionError, TimeoutError):
            self.close()
            if not reused:
                raise
        # A kept-alive connection the server had closed meanwhile; usage posts are idempotent.
        return self._exchange(data)

    def _exchange(self, data: bytes) -> tuple[int, bytes]:
        if self.sock is None:
            self.sock = socket.create_connection((HOST, self.port), timeout=SOCKET_TIMEOUT)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connects += 1
        sock = self.sock
        sock.sendall(data)
        buffer = self._recv(sock)
        for _ in range(MAX_READS):
            if (end := buffer.find(b"\r\n\r\n")) >= 0:
                break
            buffer += self._recv(sock)
        else:
            raise ConnectionError("no end of the response headers")
        status, length, close = _head(buffer[:end])
        body = buffer[end + 4 :]
        for _ in range(MAX_READS):
            if length is not None and len(body) >= length:
                break
            chunk = sock.recv(65536)
            if not chunk:
                if length is not None:
                    raise ConnectionError("connection closed mid-response")
                close = True  # no Content-Length: the body ends with the connection
                break
            body += chunk
        else:
            raise ConnectionError("response body too long")
        if close:
            self.close()
        return status, body

    @staticmethod
    def _recv(sock: socket.socket) -> bytes:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        return chunk


def _head(head: bytes) -> tuple[int, int | None, bool]:
    """Status, Content-Length and whether the server closes the connection after this answer."""
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, close = None, lines[0].startswith("HTTP/1.0")
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection":
            close = value.strip().lower() == "close"
        elif name == "transfer-encoding":
            raise ConnectionError("chunked responses are not expected here")
    return status, length, close


def _client(target: Endpoint, port: int, key: str, deadline: float, out: dict[str, Any]) -> None:
    """Send requests one after another until the deadline (and at most MAX_REQUESTS)."""
    connection = Connection(port)
    latencies = array("d")
    statuses: Counter[str] = Counter()
    created = late = unknown = 0
    sample = ""
    for n in range(MAX_REQUESTS):
        began = time.monotonic()
        if began >= deadline:
            break
        try:
            status, body = connection.exchange(target.request(f"{key}-{n}"))
        except OSError as error:
            unknown += 1  # the server may or may not have recorded it
            statuses["socket error"] += 1
            sample = sample or repr(error)
            time.sleep(0.01)
            continue
        ended = time.monotonic()
        created += status == 201
        if ended > deadline:
            late += 1
            continue
        statuses[str(status)] += 1
        if status == target.expected:
            latencies.append(ended - began)
        elif not sample:
            sample = f"{status} {body[:300]!r}"
    connection.close()
    out.update(
        latencies=latencies,
        statuses=statuses,
        created=created,
        late=late,
        unknown=unknown,
        sample=sample,
        connects=connection.connects,
    )


def _load_process(
    index: int, duration: float, start: common.Start, events: Any, job: dict[str, Any]
) -> None:
    """One load-generator process: `threads` clients, each on its own connection."""
    result: dict[str, Any] = {"index": index}
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        events.put(("ready", index))
        deadline = start.wait() + duration
        cpu_before = common.cpu_seconds()
        outs: list[dict[str, Any]] = [{} for _ in range(job["threads"])]
        threads = [
            threading.Thread(
                target=_client,
                args=(job["endpoint"], job["port"], f"{job['key']}-{index}-{n}", deadline, out),
                daemon=True,
            )
            for n, out in enumerate(outs)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=max(deadline - time.monotonic(), 0) + SOCKET_TIMEOUT * 2 + 5)
        result["cpu_seconds"] = common.cpu_seconds() - cpu_before
        result["clients"] = outs
    except Exception as error:
        result["fatal"] = repr(error)
    events.put(("result", result))
    start.finish()


def load(
    target: Endpoint, *, port: int, clients: int, processes: int, duration: float, server: "Server"
) -> dict[str, Any]:
    """`clients` concurrent clients spread over `processes` processes, for `duration` seconds."""
    processes = max(1, min(processes, clients))
    key = f"{target.name}-{secrets.token_hex(4)}"
    job = {"endpoint": target, "port": port, "key": key, "threads": clients // processes}
    if clients % processes:
        raise SystemExit("bench: --clients must be a multiple of --processes")

    def classify(pid: int, process: common.ProcessTicks) -> str:
        if server.pid in {pid, process.ppid}:
            return "gunicorn"
        return common.classify_common(pid, process)

    results, cpu, sessions = common.fan_out(
        _load_process, processes, duration, job, classify=classify
    )
    outs = [out for result in results for out in result.get("clients", [])]
    statuses: Counter[str] = Counter()
    for out in outs:
        statuses.update(out.get("statuses", {}))
    ok = statuses.get(str(target.expected), 0)
    return {
        "endpoint": target.name,
        "duration_s": duration,
        "ops": ok,
        "rate": round(ok / duration, 1),
        "errors": sum(statuses.values()) - ok,
        "statuses": dict(statuses),
        "error_sample": next((out["sample"] for out in outs if out.get("sample")), ""),
        "fatal": [r["fatal"] for r in results if "fatal" in r],
        "created": sum(out.get("created", 0) for out in outs),
        "unknown_outcome": sum(out.get("unknown", 0) for out in outs),
        "connections_opened": sum(out.get("connects", 0) for out in outs),
        "loadgen_cpu_cores": round(sum(r.get("cpu_seconds", 0) for r in results) / duration, 2),
        "cpu_cores": cpu,
        "sessions": sessions,
        "latencies": [value for out in outs for value in out.get("latencies", [])],
    }


# The server


class Server:
    """gunicorn as production runs it, with DEBUG off and the benchmark's settings module;
    stopped (its whole process group) on exit, whatever happened."""

    def __init__(self, *, port: int, workers: int) -> None:
        self.port, self.workers = port, workers
        self.process: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.gettempdir()) / f"kb-bench-gunicorn-{os.getpid()}.log"

    @property
    def pid(self) -> int:
        return self.process.pid if self.process else -1

    def __enter__(self) -> "Server":
        with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.5):
            raise SystemExit(f"bench: {HOST}:{self.port} is already in use; set BENCH_PORT")
        env = {
            **os.environ,
            **common.BENCH_ENV,
            "DEBUG": "0",
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": HOST,
            "STRIPE_WEBHOOK_SECRET": "whsec_bench_" + secrets.token_hex(8),
            "SITE_URL": f"https://{HOST}:{self.port}",
            # One token sends everything here; the production limit would answer 429.
            "API_RATE_LIMIT_PER_MINUTE": str(10**9),
        }
        command = [
            str(Path(common.PYTHON).parent / "gunicorn"),
            "config.wsgi",
            "--bind",
            f"{HOST}:{self.port}",
            "--workers",
            str(self.workers),
            "--worker-class",
            "sync",
            "--backlog",
            "2048",
            "--log-level",
            "warning",
            "--chdir",
            str(common.ROOT),
        ]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 - fixed command
                command,
                cwd=common.ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        probe = f"GET /healthz HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n\r\n".encode()
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise SystemExit(f"bench: gunicorn exited:\n{self.log_tail()}")
            try:
                status, _ = Connection(self.port).exchange(probe)
            except OSError:
                status = 0
            if status == 200:
                return
            time.sleep(0.2)
        raise SystemExit(f"bench: gunicorn did not answer /healthz in {timeout:g} s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _smoke(target: Endpoint, port: int) -> None:
    """One request first, so that a broken set-up fails with its answer, not with statistics."""
    status, body = Connection(port).exchange(target.request(f"smoke-{secrets.token_hex(4)}"))
    if status != target.expected:
        raise SystemExit(
            f"bench: POST {target.path} answered {status}, expected {target.expected}: "
            f"{body[:500]!r}"
        )


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    cpus = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per slice (≤ 60)")
    parser.add_argument("--rounds", type=int, default=2, help="slices per endpoint")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument("--processes", type=int, default=4, help="load-generator processes")
    parser.add_argument(
        "--gunicorn-workers",
        type=int,
        default=int(os.environ.get("BENCH_GUNICORN_WORKERS", 2 * cpus + 1)),
        help="sync workers (default 2 × cores + 1, gunicorn's own rule)",
    )
    args = parser.parse_args()
    duration = min(max(args.duration, 1.0), 60.0)
    rounds = min(max(args.rounds, 1), 10)
    clients = min(max(args.clients, 1), 256)
    port = int(os.environ.get("BENCH_PORT", "8765"))
    signal.signal(signal.SIGTERM, _terminate)

    common.prepare()
    common.django_setup()
    world = common.world_create(label="usage-api", funds=FUNDS)
    machine = {**common.machine(), "busy_before_start": common.machine_load()}
    targets = [
        endpoint("minimal", "/bench/ping", 200, port=port, world=world),
        endpoint("usage", "/api/usage", 201, port=port, world=world),
    ]
    print(
        f"usage_api: gunicorn {args.gunicorn_workers} sync workers on {HOST}:{port}, DEBUG off; "
        f"{clients} clients in {args.processes} processes; the two endpoints alternate in "
        f"{rounds} slice(s) of {duration:g} s; {machine['cpus']} CPUs, "
        f"{machine['busy_before_start']} cores busy with other work before the start"
    )
    slices: list[dict[str, Any]] = []
    answered = {"created": 1, "unknown": 0}  # the smoke request made one
    with Server(port=port, workers=args.gunicorn_workers) as server:
        server.wait_ready()
        for target in targets:
            _smoke(target, port)
        options = {"port": port, "clients": clients, "processes": args.processes}
        for target in targets:  # every worker connected to PostgreSQL and Redis, code warm
            _count(answered, load(target, duration=WARMUP_SECONDS, server=server, **options))
        for round_ in range(rounds):
            for target in targets if round_ % 2 == 0 else targets[::-1]:
                result = load(target, duration=duration, server=server, **options)
                slices.append(result)
                _count(answered, result)
                _print_slice(result)
        crashed = server.process is not None and server.process.poll() is not None
    status = _report(world, slices, machine, server, answered, args, crashed=crashed)
    if status == 0:
        server.log.unlink(missing_ok=True)
    return status


def _count(answered: dict[str, int], result: dict[str, Any]) -> None:
    answered["created"] += result["created"]
    answered["unknown"] += result["unknown_outcome"]


def _print_slice(result: dict[str, Any]) -> None:
    print(
        f"  {result['endpoint']:8} {result['rate']:>8.1f} req/s  errors {result['errors']}  "
        f"cores {result['cpu_cores']}  connections {result['sessions']}"
    )
    if result["error_sample"]:
        print(f"    first error: {result['error_sample']}")


def _figure(slices: list[dict[str, Any]], name: str) -> dict[str, Any]:
    mine = [s for s in slices if s["endpoint"] == name]
    figure = common.combine(mine)
    statuses: Counter[str] = Counter()
    for s in mine:
        statuses.update(s["statuses"])
    figure.update(
        statuses=dict(statuses),
        connections_opened=sum(s["connections_opened"] for s in mine),
        loadgen_cpu_cores=round(sum(s["loadgen_cpu_cores"] for s in mine) / len(mine), 2),
    )
    return figure


def _report(  # noqa: PLR0917
    world: common.World,
    slices: list[dict[str, Any]],
    machine: dict[str, Any],
    server: Server,
    answered: dict[str, int],
    args: argparse.Namespace,
    *,
    crashed: bool,
) -> int:
    figures = {name: _figure(slices, name) for name in ("minimal", "usage")}
    usage, minimal = figures["usage"], figures["minimal"]
    ratio = round(usage["rate"] / minimal["rate"], 2) if minimal["rate"] else None
    p99 = usage["p99_ms"]
    check = common.ledger_check(world.account_id, key_prefix="")
    made, unknown = answered["created"], answered["unknown"]
    check["created_answers"] = made
    check["unknown_outcomes"] = unknown
    check["ok"] = (
        check["balance_equals_ledger"] and made <= check["usage_entries"] <= made + unknown
    )
    targets = {
        "ratio_at_least": TARGET_RATIO,
        "ratio": ratio,
        "ratio_met": ratio is not None and ratio >= TARGET_RATIO,
        "p99_ms_below": TARGET_P99_MS,
        "p99_met": p99 is not None and p99 < TARGET_P99_MS,
    }
    print()
    print(
        f"{'endpoint':18} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
        f"{'CPU ms per request: gunicorn':>29} {'postgres':>9} {'load gen':>9}"
    )
    for name, path in (("minimal", "POST /bench/ping"), ("usage", "POST /api/usage")):
        figure = figures[name]
        per_op = figure["cpu_ms_per_op"]
        print(
            f"{path:18} {figure['rate']:>8.1f} {figure['p50_ms']!s:>8} {figure['p99_ms']!s:>8} "
            f"{figure['errors']:>7} {per_op.get('gunicorn', 0):>29} {per_op.get('postgres', 0):>9} "
            f"{per_op.get('bench', 0):>9}"
        )
    print(
        f"usage/minimal = {ratio} (target ≥ {TARGET_RATIO}: "
        f"{'met' if targets['ratio_met'] else 'MISSED'}); usage p99 {p99} ms "
        f"(target < {TARGET_P99_MS:g} ms: {'met' if targets['p99_met'] else 'MISSED'})"
    )
    print(
        f"ledger: balance == sum(ledger): {check['balance_equals_ledger']}; "
        f"{check['usage_entries']} usage entries for {made} created answers: "
        f"{'ok' if check['ok'] else 'WRONG'}"
    )
    path = common.results_write(
        "usage_api",
        {
            "machine": machine,
            "server": {
                "command": "gunicorn config.wsgi",
                "settings": "bench.settings (config.settings, DEBUG=0, + /bench/ping)",
                "workers": args.gunicorn_workers,
                "worker_class": "sync",
            },
            "load_generator": {"clients": args.clients, "processes": args.processes},
            "slice_s": slices[0]["duration_s"] if slices else None,
            "world": common.world_dict(world),
            "figures": figures,
            "targets": targets,
            "slices": [common.public(s) for s in slices],
            "ledger": check,
        },
    )
    print(f"written to {path.relative_to(common.ROOT)}")
    failed = crashed or not check["ok"] or any(s["fatal"] for s in slices)
    if crashed:
        print(f"usage_api: gunicorn died during the run:\n{server.log_tail()}")
    if any(s["errors"] for s in slices):
        print(f"usage_api: requests failed; gunicorn log {server.log}:\n{server.log_tail()}")
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
