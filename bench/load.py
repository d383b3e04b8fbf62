"""A mixed load on loopback for a fixed time: the usage API, dashboard pages and signed webhooks
together, against the production server as deployed: `make serve` (bench/serve.py's Server,
DEBUG off; it collects the static files first, as the Dockerfile does).

Every client (threads in a few processes, each on its own connection) goes round a fixed mix:
POST /api/usage as a seated member of a funded organization (unique request_ids), GET of the
organization's dashboard pages as its owner (logged in over HTTP like a browser), and POST
/stripe/webhook/ with a Stripe-signed event of a type the app stores and ignores. Reported per
kind: requests per second, p50 / p99 and errors; afterwards balance == sum(ledger), one usage
entry per 201 and one stored event per accepted webhook. Zero errors expected: the exit status
is 1 otherwise.

Alone: .venv/bin/python bench/load.py [--duration 10] [--clients 12] [--processes 3]
       [--gunicorn-workers N]
Uses kb_bench and Redis DB 5 as the other benchmarks (bench/README.md), or BENCH_DATABASE /
BENCH_REDIS_URL if set; port BENCH_LOAD_PORT (8766); results in bench/results/load.json.
"""

import argparse
import http.client
import json
import os
import re
import secrets
import signal
import sys
import threading
import time
from array import array
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common, serve

HOST = serve.HOST  # 127.0.0.1 only
FUNDS = 10**12
MAX_REQUESTS = 200_000  # per client, besides the time bound
WARMUP_SECONDS = 2.0
# The mix each client goes round (offset per client so that the kinds interleave).
MIX = ("usage", "page", "usage", "webhook", "usage", "page", "usage", "page")
PAGES = ("", "credits/", "usage/", "invoices/", "members/", "seats/")
EXPECTED = {"usage": 201, "page": 200, "webhook": 200}
OWNER_PASSWORD = "bench-load-owner-password-42"


def owner_password(world: common.World) -> None:
    from accounts.models import User

    owner = User.objects.get(pk=world.owner_id)
    owner.set_password(OWNER_PASSWORD)
    owner.save(update_fields=["password"])


def log_in(port: int, email: str) -> str:
    """Log the owner in as a browser does (the form, its CSRF token, the POST); returns the
    session cookie's value."""
    origin = f"https://{HOST}:{port}"
    proxy = {"X-Forwarded-Proto": "https"}
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("GET", "/accounts/login/", headers=proxy)
        page = connection.getresponse()
        body = page.read().decode()
        csrf_cookie = _cookie(page.getheader("Set-Cookie", ""), "csrftoken")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', body)
        if page.status != 200 or not csrf_cookie or not token:
            raise SystemExit(f"load: the log-in page answered {page.status}")
        form = f"username={email.replace('@', '%40')}&password={OWNER_PASSWORD}"
        form += f"&csrfmiddlewaretoken={token.group(1)}"
        connection.request(
            "POST",
            "/accounts/login/",
            body=form,
            headers={
                **proxy,
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": f"csrftoken={csrf_cookie}",
                "Origin": origin,
                "Referer": f"{origin}/accounts/login/",
            },
        )
        answer = connection.getresponse()
        answer.read()
        session = _cookie(answer.getheader("Set-Cookie", ""), "sessionid")
        if answer.status != 302 or not session:
            raise SystemExit(f"load: logging the owner in answered {answer.status}")
        return session
    finally:
        connection.close()


def _cookie(header: str, name: str) -> str:
    found = re.search(rf"{name}=([^;,\s]+)", header)
    return found.group(1) if found else ""


# The requests


@dataclass(frozen=True)
class Job:
    port: int
    threads: int
    key: str  # request_ids and event ids of this run start with it
    world: common.World
    session: str
    webhook_secret: str


def _requests(job: Job) -> dict[str, Any]:
    usage = serve.endpoint("usage", "/api/usage", 201, port=job.port, world=job.world)
    pages = [
        (
            f"GET /o/{job.world.organization_id}/{page} HTTP/1.1\r\n"
            f"Host: {HOST}:{job.port}\r\n"
            f"Cookie: sessionid={job.session}\r\n"
            "X-Forwarded-Proto: https\r\n\r\n"
        ).encode()
        for page in PAGES
    ]
    return {"usage": usage, "pages": pages}


def _webhook(job: Job, event_id: str) -> bytes:
    from payments.signing import signature_header

    body = json.dumps(
        {
            "id": event_id,
            "object": "event",
            "api_version": "2026-08-27",
            "created": int(time.time()),
            "data": {"object": {"id": f"obj_{event_id}", "object": "bench"}},
            "livemode": False,
            "type": "bench.load",  # stored and ignored, as any type the product does not use
        },
        separators=(",", ":"),
    ).encode()
    head = (
        "POST /stripe/webhook/ HTTP/1.1\r\n"
        f"Host: {HOST}:{job.port}\r\n"
        f"Stripe-Signature: {signature_header(body, secret=job.webhook_secret)}\r\n"
        "X-Forwarded-Proto: https\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _client(job: Job, name: str, offset: int, deadline: float, out: dict[str, Any]) -> None:
    """One client: the mix, one request after another, until the deadline (bounded)."""
    requests = _requests(job)
    connection = serve.Connection(job.port)
    latencies: dict[str, array[float]] = {kind: array("d") for kind in EXPECTED}
    statuses: dict[str, Counter[str]] = {kind: Counter() for kind in EXPECTED}
    created = unknown = late = 0
    samples: dict[str, str] = {}
    for n in range(MAX_REQUESTS):
        kind = MIX[(n + offset) % len(MIX)]
        if kind == "usage":
            request = requests["usage"].request(f"{job.key}-{name}-{n}")
        elif kind == "page":
            request = requests["pages"][(n // len(MIX) + offset) % len(PAGES)]
        else:
            request = _webhook(job, f"evt_{job.key}_{name}_{n}")
        began = time.monotonic()
        if began >= deadline:
            break
        try:
            status, body = connection.exchange(request)
        except OSError as error:
            unknown += kind == "usage"
            statuses[kind]["socket error"] += 1
            samples.setdefault(kind, repr(error))
            time.sleep(0.01)
            continue
        ended = time.monotonic()
        created += kind == "usage" and status == 201
        if ended > deadline:
            late += 1
            continue
        statuses[kind][str(status)] += 1
        if status == EXPECTED[kind]:
            latencies[kind].append(ended - began)
        else:
            samples.setdefault(kind, f"{status} {body[:300]!r}")
    connection.close()
    out.update(
        latencies=latencies,
        statuses=statuses,
        created=created,
        unknown=unknown,
        late=late,
        samples=samples,
    )


def _load_process(index: int, duration: float, start: common.Start, events: Any, job: Job) -> None:
    result: dict[str, Any] = {"index": index}
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        events.put(("ready", index))
        deadline = start.wait() + duration
        cpu_before = common.cpu_seconds()
        outs: list[dict[str, Any]] = [{} for _ in range(job.threads)]
        threads = [
            threading.Thread(
                target=_client,
                args=(job, f"{index}-{n}", index * job.threads + n, deadline, out),
                daemon=True,
            )
            for n, out in enumerate(outs)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=max(deadline - time.monotonic(), 0) + 30)
        result["cpu_seconds"] = common.cpu_seconds() - cpu_before
        result["clients"] = outs
    except Exception as error:
        result["fatal"] = repr(error)
    events.put(("result", result))
    start.finish()


def run(job: Job, *, processes: int, duration: float, server: serve.Server) -> dict[str, Any]:
    def classify(pid: int, process: common.ProcessTicks) -> str:
        if server.owns(process):
            return "gunicorn"
        return common.classify_common(pid, process)

    results, cpu, sessions = common.fan_out(
        _load_process, processes, duration, job, classify=classify
    )
    outs = [out for result in results for out in result.get("clients", [])]
    kinds: dict[str, Any] = {}
    for kind, expected in EXPECTED.items():
        statuses: Counter[str] = Counter()
        for out in outs:
            statuses.update(out.get("statuses", {}).get(kind, {}))
        ok = statuses.get(str(expected), 0)
        latencies = sorted(v for out in outs for v in out.get("latencies", {}).get(kind, []))
        kinds[kind] = {
            "ops": ok,
            "rate": round(ok / duration, 1),
            "p50_ms": common.ms(common.percentile(latencies, 0.50)),
            "p99_ms": common.ms(common.percentile(latencies, 0.99)),
            "max_ms": common.ms(latencies[-1] if latencies else None),
            "errors": sum(statuses.values()) - ok,
            "statuses": dict(statuses),
            "error_sample": next(
                (out["samples"][kind] for out in outs if kind in out.get("samples", {})), ""
            ),
        }
    total = sum(k["ops"] for k in kinds.values())
    return {
        "duration_s": duration,
        "kinds": kinds,
        "rate": round(total / duration, 1),
        "errors": sum(k["errors"] for k in kinds.values()),
        "created": sum(out.get("created", 0) for out in outs),
        "unknown_outcome": sum(out.get("unknown", 0) for out in outs),
        "fatal": [r["fatal"] for r in results if "fatal" in r],
        "loadgen_cpu_cores": round(sum(r.get("cpu_seconds", 0) for r in results) / duration, 2),
        "cpu_cores": cpu,
        "sessions": sessions,
    }


def _checks(
    world: common.World, key: str, measured: dict[str, Any], warm: dict[str, Any]
) -> dict[str, Any]:
    from payments.models import WebhookEvent

    check = common.ledger_check(world.account_id, key_prefix=key)
    made = measured["created"] + warm["created"]
    unknown = measured["unknown_outcome"] + warm["unknown_outcome"]
    accepted = sum(run_["kinds"]["webhook"]["statuses"].get("200", 0) for run_ in (measured, warm))
    stored = WebhookEvent.objects.filter(event_id__startswith=f"evt_{key}-").count()
    check.update(
        created_answers=made,
        unknown_outcomes=unknown,
        webhooks_accepted=accepted,
        webhooks_stored=stored,
    )
    # A webhook answered after the deadline is stored but not counted as accepted: hence ≥.
    check["ok"] = (
        check["balance_equals_ledger"]
        and check["usage_entries"] == check["usage_records"]
        and made <= check["usage_entries"] <= made + unknown
        and stored >= accepted
    )
    return check


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds (≤ 120)")
    parser.add_argument("--clients", type=int, default=12, help="concurrent clients")
    parser.add_argument("--processes", type=int, default=3, help="load-generator processes")
    parser.add_argument(
        "--gunicorn-workers",
        type=int,
        default=None,
        help="gunicorn workers (WEB_CONCURRENCY; default config/gunicorn.py's)",
    )
    args = parser.parse_args()
    duration = min(max(args.duration, 1.0), 120.0)
    processes = max(1, min(args.processes, args.clients))
    if args.clients % processes:
        raise SystemExit("load: --clients must be a multiple of --processes")
    port = int(os.environ.get("BENCH_LOAD_PORT", "8766"))
    signal.signal(signal.SIGTERM, _terminate)

    common.prepare()
    common.django_setup()
    world = common.world_create(label="load", funds=FUNDS)
    owner_password(world)
    from accounts.models import User

    owner_email = User.objects.get(pk=world.owner_id).email
    machine = {**common.machine(), "busy_before_start": common.machine_load()}
    key = f"load-{secrets.token_hex(4)}"
    print(
        f"load: make serve on {HOST}:{port}, DEBUG off; "
        f"{args.clients} clients in {processes} processes for {duration:g} s; mix {MIX}; "
        f"{machine['cpus']} CPUs, {machine['busy_before_start']} cores busy before the start"
    )
    # This load signs webhooks: the server checks the secret chosen here.
    webhook_secret = "whsec_bench_" + secrets.token_hex(8)
    env = {"STRIPE_WEBHOOK_SECRET": webhook_secret}
    if args.gunicorn_workers:
        env["WEB_CONCURRENCY"] = str(args.gunicorn_workers)
    with serve.Server(port=port, env=env) as server:
        server.wait_ready()
        job = Job(
            port=port,
            threads=args.clients // processes,
            key=key,
            world=world,
            session=log_in(port, owner_email),
            webhook_secret=webhook_secret,
        )
        warm = run(
            replace(job, key=f"{key}-warm"),
            processes=processes,
            duration=WARMUP_SECONDS,
            server=server,
        )
        measured = run(
            replace(job, key=f"{key}-run"), processes=processes, duration=duration, server=server
        )
        crashed = not server.alive()
    check = _checks(world, key, measured, warm)
    return _report(measured, warm, check, world, machine, args, server, crashed=crashed)


def _report(  # noqa: PLR0917
    measured: dict[str, Any],
    warm: dict[str, Any],
    check: dict[str, Any],
    world: common.World,
    machine: dict[str, Any],
    args: argparse.Namespace,
    server: serve.Server,
    *,
    crashed: bool,
) -> int:
    print()
    print(f"{'kind':10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for kind, figure in measured["kinds"].items():
        print(
            f"{kind:10} {figure['rate']:>8.1f} {figure['p50_ms']!s:>8} {figure['p99_ms']!s:>8} "
            f"{figure['errors']:>7}"
        )
        if figure["error_sample"]:
            print(f"  first {kind} error: {figure['error_sample']}")
    print(f"{'all':10} {measured['rate']:>8.1f} {'':>8} {'':>8} {measured['errors']:>7}")
    print(f"cores: {measured['cpu_cores']}")
    print(
        f"ledger: balance == sum(ledger): {check['balance_equals_ledger']}; "
        f"{check['usage_entries']} usage entries for {check['created_answers']} created answers; "
        f"{check['webhooks_stored']} events stored for {check['webhooks_accepted']} accepted: "
        f"{'ok' if check['ok'] else 'WRONG'}"
    )
    path = common.results_write(
        "load",
        {
            "machine": machine,
            "server": {
                "command": "make serve (gunicorn --config config/gunicorn.py config.wsgi)",
                "settings": "config.settings, DEBUG=0, BILLING_GATEWAY=sandbox",
                "workers": server.env.get("WEB_CONCURRENCY", "config/gunicorn.py's"),
            },
            "load_generator": {
                "clients": args.clients,
                "processes": args.processes,
                "mix": list(MIX),
                "pages": [f"/o/<id>/{page}" for page in PAGES],
            },
            "world": common.world_dict(world),
            "measured": measured,
            "warm_up": {k: v for k, v in warm.items() if k != "kinds"},
            "ledger": check,
        },
    )
    print(f"written to {path.relative_to(common.ROOT)}")
    failed = crashed or not check["ok"] or measured["errors"] or warm["errors"]
    failed = failed or bool(measured["fatal"] or warm["fatal"])
    if crashed:
        print(f"load: make serve died during the run:\n{server.log_tail()}")
    if measured["errors"] or warm["errors"]:
        print(f"load: requests failed; server log {server.log}:\n{server.log_tail()}")
    if not failed:
        server.log.unlink(missing_ok=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
