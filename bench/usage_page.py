"""The Usage tab and its CSV export with 10,000 and with 1,000,000 usage events.

Each size gets its own organization (an owner and 50 members, 8 models, 3 projects per member,
events spread over the last 365 days) whose ledger entries, usage records and daily rollups are
written in bulk by SQL (generate_series; the rollups by the same GROUP BY as the backfill
migration), so that set-up takes minutes, not hours. They are kept for the next run (`--fresh`
builds them again). Then, in this process, through Django's test client (every middleware, the
session, the template), with DEBUG off:

- page render time of the Usage tab: the owner's default view (last 30 days), the owner's view
  stacked by member, one member over this year, the owner's "all time", a member's own view;
  median, p95 and min of 20 renders after 3 warm-ups, the sizes taking turns so that both meet
  the same background load;
- the CSV export of all time (every rollup row): time, rows, the peak of Python allocations
  (tracemalloc) and the growth of the process's resident memory while it streams.

Target (issue 7): the owner's default page under 300 ms at 1,000,000 events and at most 2× its
time at 10,000; export memory flat (about the same peak at both sizes).

Alone: .venv/bin/python bench/usage_page.py [--sizes 10000,1000000] [--renders 20] [--fresh]
Uses the kb_bench_usage database (created and migrated here) and Redis DB 5; results in
bench/results/usage_page.json. Not part of the test suite.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

ROOT = common.ROOT

DATABASE_URL = "postgres:///kb_bench_usage"
ENV = {
    **common.DEV_ENV,
    "DATABASE_URL": DATABASE_URL,
    "REDIS_URL": "redis://127.0.0.1:6379/5",
    "CONN_MAX_AGE": "0",
}
MEMBERS = 50
DAYS = 365
MODELS = [
    ("anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-haiku-4-5"),
    ("anthropic", "claude-opus-4-1"),
    ("openai", "gpt-5"),
    ("openai", "gpt-4.1-mini"),
    ("google", "gemini-2.5-pro"),
    ("deepseek", "deepseek-chat"),
    ("mistral", "codestral-latest"),
]
PROJECTS = 12  # each member works on 3 of them
TARGET_MS = 300.0
TARGET_RATIO = 2.0
WARMUP = 3


def prepare() -> None:
    env = {**os.environ, **ENV}
    for command in (
        [common.PYTHON, "scripts/ensure_services.py"],
        [common.PYTHON, "manage.py", "migrate", "--noinput", "--verbosity", "0"],
    ):
        done = subprocess.run(command, cwd=ROOT, env=env, check=False, timeout=600)  # noqa: S603
        if done.returncode:
            raise SystemExit(f"bench: `{' '.join(command[1:])}` failed ({done.returncode})")


def django_setup() -> None:
    os.environ.update(ENV)
    import django
    from django.conf import settings

    django.setup()
    settings.DEBUG = False  # no query log: the ORM as in production


# Set-up: one organization per size, filled in bulk


def _pick(column: str, salt: int, modulus: int) -> str:
    """A deterministic pseudo-random 0..modulus-1 from the event number `column`."""
    hashed = f"hashint8({column}::bigint * 1000003 + {salt})::bigint"
    return f"((({hashed} %% {modulus}) + {modulus}) %% {modulus})"


def organization_for(size: int, *, fresh: bool) -> dict[str, Any]:
    from django.contrib.auth.hashers import make_password
    from django.db import connection, transaction

    from accounts.models import User
    from credits.models import CreditAccount, LedgerEntry
    from organizations.models import Membership, Organization
    from organizations.roles import Role

    name = f"Bench usage {size}"
    existing = Organization.objects.filter(name=name).order_by("-created_at").first()
    if existing is not None and not fresh:
        account = CreditAccount.objects.get(organization=existing)
        events = LedgerEntry.objects.filter(account=account, kind="usage").count()
        if events == size:
            owner = Membership.objects.get(organization=existing, role=Role.OWNER).user
            member = (
                Membership.objects.filter(organization=existing, role=Role.MEMBER)
                .order_by("user__email")
                .first()
            )
            assert member is not None
            return _world(existing, account, owner, member.user, size, seconds=0.0)

    started = time.monotonic()
    suffix = f"{size}-{int(time.time())}"
    with transaction.atomic():
        organization = Organization.objects.create(name=name)
        password = make_password(None)
        owner = User.objects.create(email=f"owner-{suffix}@bench.invalid", password=password)
        people = User.objects.bulk_create(
            User(
                email=f"m{n:03d}-{suffix}@bench.invalid", name=f"Member {n:03d}", password=password
            )
            for n in range(MEMBERS)
        )
        Membership.objects.create(organization=organization, user=owner, role=Role.OWNER)
        Membership.objects.bulk_create(
            Membership(organization=organization, user=person, role=Role.MEMBER)
            for person in people
        )
        account = CreditAccount.objects.create(organization=organization)
        user_ids = "ARRAY[" + ",".join(str(p.pk) for p in people) + "]::bigint[]"
        models = "ARRAY[" + ",".join(f"'{p}/{m}'" for p, m in MODELS) + "]"
        member = _pick("n", 1, MEMBERS)
        cost = f"(1000 + {_pick('n', 2, 200000)})"
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO credits_ledgerentry (account_id, amount, kind, idempotency_key,"
                " created_at, actor_id, reason) VALUES (%s, %s, 'grant', 'bench-funds', now(),"
                " NULL, 'benchmark')",
                [account.pk, 10**15],
            )
            # The events: a ledger entry and its usage record each, in one statement.
            cursor.execute(
                f"""
                WITH source AS (
                    SELECT n,
                           ({user_ids})[{member} + 1] AS user_id,
                           ({models})[{_pick("n", 3, len(MODELS))} + 1] AS model,
                           'project-' || (({member}) * 5 + {_pick("n", 4, 3)}) %% {PROJECTS}
                               AS project,
                           {cost} AS cost,
                           now() - make_interval(secs => {_pick("n", 5, DAYS * 86400)})
                               AS created_at
                    FROM generate_series(1, %s) AS n
                ),
                entries AS (
                    INSERT INTO credits_ledgerentry (account_id, amount, kind, idempotency_key,
                                                     created_at, actor_id, reason)
                    SELECT %s, -cost, 'usage', 'bench-' || n, created_at, user_id, ''
                    FROM source
                    RETURNING id, idempotency_key
                )
                INSERT INTO credits_usagerecord (entry_id, account_id, user_id, request_id,
                    provider, model, project, input_tokens, output_tokens, cache_read_tokens,
                    cache_write_tokens, cost, created_at)
                SELECT entries.id, %s, source.user_id, entries.idempotency_key,
                       split_part(source.model, '/', 1), split_part(source.model, '/', 2),
                       source.project, 1000 + source.cost %% 50000, 100 + source.cost %% 4000,
                       0, 0, source.cost, source.created_at
                FROM entries JOIN source ON entries.idempotency_key = 'bench-' || source.n
                """,  # noqa: S608 - numbers and names generated here
                [size, account.pk, account.pk],
            )
            # The rollups, by the backfill migration's own statement, for this account.
            cursor.execute(
                """
                INSERT INTO analytics_dailyusage (account_id, day, user_id, provider, model,
                    project, requests, input_tokens, output_tokens, cache_read_tokens,
                    cache_write_tokens, cost)
                SELECT account_id, (created_at AT TIME ZONE 'UTC')::date, user_id, provider,
                    model, project, COUNT(*), SUM(input_tokens), SUM(output_tokens),
                    SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(cost)
                FROM credits_usagerecord WHERE account_id = %s
                GROUP BY account_id, (created_at AT TIME ZONE 'UTC')::date, user_id, provider,
                    model, project
                """,
                [account.pk],
            )
            cursor.execute(
                "UPDATE credits_creditaccount SET balance = (SELECT SUM(amount) FROM"
                " credits_ledgerentry WHERE account_id = %s) WHERE id = %s",
                [account.pk, account.pk],
            )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE credits_ledgerentry, credits_usagerecord, analytics_dailyusage")
    return _world(organization, account, owner, people[0], size, seconds=time.monotonic() - started)


def _world(
    organization: Any, account: Any, owner: Any, member: Any, size: int, *, seconds: float
) -> dict[str, Any]:
    from analytics.models import DailyUsage

    return {
        "organization": organization,
        "account": account,
        "owner": owner,
        "member": member,
        "events": size,
        "rollup_rows": DailyUsage.objects.filter(account=account).count(),
        "setup_seconds": round(seconds, 1),
    }


# Measurements


def render_times(targets: dict[str, tuple[Any, str]], renders: int) -> dict[str, dict[str, Any]]:
    """Render each size's page `renders` times, the sizes taking turns, so that every size meets
    the same background load (this machine is shared); median, p95 and min per size."""
    times: dict[str, list[float]] = {size: [] for size in targets}
    for client, url in targets.values():
        for _ in range(WARMUP):
            response = client.get(url)
            if response.status_code != 200:
                raise SystemExit(f"bench: {url} answered {response.status_code}")
    sizes: dict[str, int] = {}
    for _ in range(renders):
        for size, (client, url) in targets.items():
            started = time.perf_counter()
            response = client.get(url)
            times[size].append(time.perf_counter() - started)
            assert response.status_code == 200
            sizes[size] = len(response.content)
    result = {}
    for size, values in times.items():
        ordered = sorted(values)
        result[size] = {
            "median_ms": common.ms(statistics.median(ordered)),
            "p95_ms": common.ms(common.percentile(ordered, 0.95)),
            "min_ms": common.ms(ordered[0]),
            "bytes": sizes[size],
        }
    return result


def _rss() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def export(client: Any, url: str) -> dict[str, Any]:
    client.get(url)  # warm
    tracemalloc.start()
    rss_before = rss_peak = _rss()
    started = time.perf_counter()
    response = client.get(url)
    assert response.status_code == 200
    lines = size = 0
    for chunks, chunk in enumerate(response.streaming_content, start=1):
        lines += chunk.count(b"\n")
        size += len(chunk)
        if chunks % 10 == 0:
            rss_peak = max(rss_peak, _rss())
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "rows": lines - 1,
        "bytes": size,
        "seconds": round(seconds, 2),
        "python_peak_mib": round(peak / 2**20, 2),
        "rss_growth_mib": round((max(rss_peak, _rss()) - rss_before) / 2**20, 2),
    }


PAGES: dict[str, tuple[str, str]] = {
    # name: (who, query string)
    "owner_default_30d": ("owner", ""),
    "owner_by_member_30d": ("owner", "?stack=member"),
    "owner_one_member_year": ("owner", "?period=year&member={member}"),
    "owner_all_time": ("owner", "?period=all"),
    "member_default_30d": ("member", ""),
}


def measure(worlds: dict[str, dict[str, Any]], renders: int) -> dict[str, Any]:
    from django.test import Client
    from django.urls import reverse

    clients: dict[tuple[str, str], Any] = {}
    for size, world in worlds.items():
        for who in ("owner", "member"):
            client = Client()
            client.force_login(world[who])
            clients[(size, who)] = client
    pages: dict[str, dict[str, Any]] = {size: {} for size in worlds}
    for name, (who, query) in PAGES.items():
        targets = {
            size: (
                clients[(size, who)],
                reverse("org_usage", args=[world["organization"].pk])
                + query.format(member=world["member"].pk),
            )
            for size, world in worlds.items()
        }
        for size, figures in render_times(targets, renders).items():
            pages[size][name] = figures
    runs = {}
    for size, world in worlds.items():
        url = reverse("org_usage_csv", args=[world["organization"].pk]) + "?period=all"
        runs[size] = {
            "events": world["events"],
            "rollup_rows": world["rollup_rows"],
            "setup_seconds": world["setup_seconds"],
            "pages": pages[size],
            "csv_all_time": export(clients[(size, "owner")], url),
        }
    return runs


def __getattr__(name: str) -> Any:
    """This module is also the benchmark's URLconf: the project's URLs with the analytics views
    in front (the same as the project's once `org_usage` points at them)."""
    if name == "urlpatterns":
        from analytics.urls import urlpatterns as analytics_urlpatterns
        from config.urls import urlpatterns as project_urlpatterns

        return [*analytics_urlpatterns, *project_urlpatterns]
    raise AttributeError(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--renders", type=int, default=20)
    parser.add_argument("--fresh", action="store_true", help="build the organizations again")
    options = parser.parse_args()
    sizes = [int(s) for s in options.sizes.split(",")]

    prepare()
    django_setup()
    from django.conf import settings

    # The test client's host; the page is served as in production otherwise (DEBUG off).
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    settings.ROOT_URLCONF = "bench.usage_page"

    worlds = {}
    for size in sizes:
        print(f"bench usage_page: {size:,} events: setting up…", flush=True)
        world = organization_for(size, fresh=options.fresh)
        print(
            f"  {world['rollup_rows']:,} rollup rows"
            + (f", built in {world['setup_seconds']} s" if world["setup_seconds"] else ", reused"),
            flush=True,
        )
        worlds[str(size)] = world
    runs = measure(worlds, options.renders)
    for size, result in runs.items():
        print(f"{int(size):,} events ({result['rollup_rows']:,} rollup rows):")
        for name, figures in result["pages"].items():
            print(
                f"  {name:<24} median {figures['median_ms']:>8} ms  p95 {figures['p95_ms']:>8} ms"
                f"  min {figures['min_ms']:>8} ms"
            )
        csv = result["csv_all_time"]
        print(
            f"  csv all time: {csv['rows']:,} rows in {csv['seconds']} s, Python peak "
            f"{csv['python_peak_mib']} MiB, RSS growth {csv['rss_growth_mib']} MiB",
            flush=True,
        )

    verdict: dict[str, Any] = {}
    if "10000" in runs and "1000000" in runs:
        small = runs["10000"]["pages"]["owner_default_30d"]["median_ms"]
        large = runs["1000000"]["pages"]["owner_default_30d"]["median_ms"]
        small_csv = runs["10000"]["csv_all_time"]["python_peak_mib"]
        large_csv = runs["1000000"]["csv_all_time"]["python_peak_mib"]
        verdict = {
            "page_ms_at_1m": large,
            "page_ms_at_10k": small,
            "ratio": round(large / small, 2),
            "page_under_300ms": large < TARGET_MS,
            "ratio_at_most_2x": large / small <= TARGET_RATIO,
            "csv_python_peak_mib": [small_csv, large_csv],
            "csv_memory_flat": large_csv <= max(small_csv * 2, small_csv + 2),
        }
        print(
            f"verdict: {large} ms at 1M events (target < {TARGET_MS:.0f}), {verdict['ratio']}× the"
            f" 10k time (target ≤ {TARGET_RATIO:.0f}×); CSV peak {small_csv} → {large_csv} MiB"
        )
    path = common.results_write(
        "usage_page",
        {
            "machine": common.machine(),
            "targets": {"page_ms": TARGET_MS, "ratio": TARGET_RATIO},
            "runs": runs,
            "verdict": verdict,
        },
    )
    print(f"results: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
