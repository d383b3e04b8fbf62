"""The Usage tab and its CSV export with 10,000, 1,000,000 and 10,000,000 usage events.

Each size gets its own organization (an owner and 50 members, 8 models, 3 projects per member,
events spread evenly over the last 365 days, in time order) whose ledger entries, usage records
and daily rollups are written in bulk by SQL (generate_series; the rollups by the same GROUP BY as
the backfill migration), then its weeks are summed by `analytics.services.usage_weeks_sum`, as the
hourly job would have. Set-up takes about 5 s, 40 s and 7 min here; the organizations are kept for
the next run (`--fresh` builds them again). Then, in this process, through Django's test client
(every middleware, the session, the template), with DEBUG off:

- page render time of the Usage tab for every period (last 7 and 30 days, this and last month,
  this year, all time, a 92-day custom range, the longest with a bar per day, and a 200-day one),
  the owner's views stacked by member and filtered by a member, a model, a project and a provider,
  and a member's own view of every period (the organization letting members see its totals, the
  heavier page); median, p95 and min of `--renders` renders after 2 warm-ups, the sizes taking
  turns so that all meet the same background load;
- the CSV export of all time (every daily rollup row): time, rows, the peak of Python allocations
  (tracemalloc) and the growth of the process's resident memory while it streams;
- the all-time totals of the page against the ledger (the sum and count of the usage entries).

Targets: every page under 300 ms (median) at 1,000,000 and at 10,000,000 events (issue 15), the
owner's default page at most 2x its time at 10,000 (issue 7), export memory flat. A missed time
is printed as MISSED; totals that differ from the ledger fail the run (exit 1).

Alone: .venv/bin/python bench/usage_page.py [--sizes 10000,1000000,10000000] [--renders 15]
[--fresh]. Uses its own database, kb_bench_usage (`BENCH_USAGE_DATABASE_URL` to change it; created
and migrated here), and Redis DB 5 (`BENCH_USAGE_REDIS_URL`); results in
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

# Its own database (BENCH_USAGE_DATABASE_URL, BENCH_USAGE_REDIS_URL override them, so that two
# people benchmarking on one machine do not share one), never the development or test ones.
DATABASE_URL = os.environ.get("BENCH_USAGE_DATABASE_URL") or "postgres:///kb_bench_usage"
ENV = {
    **common.DEV_ENV,
    "DATABASE_URL": DATABASE_URL,
    "REDIS_URL": os.environ.get("BENCH_USAGE_REDIS_URL") or common.REDIS_URL,
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
WARMUP = 2
SIZES = "10000,1000000,10000000"
CHUNK = 1_000_000  # events per INSERT of the set-up


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
                "INSERT INTO credits_ledgerentry (account_id, amount, kind, source,"
                " idempotency_key, created_at, actor_id, reason) VALUES (%s, %s, 'grant', 'grant',"
                " 'bench-funds', now(), NULL, 'benchmark')",
                [account.pk, 10**15],
            )
            # The events' ledger ids are reserved in one go, so that each usage record names
            # its entry by arithmetic rather than through a join of millions of rows.
            cursor.execute("SELECT nextval(pg_get_serial_sequence('credits_ledgerentry', 'id'))")
            base = cursor.fetchone()[0]
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('credits_ledgerentry', 'id'), %s)",
                [base + size],
            )
            # No triggers while the rows go in (a superuser's switch; the local PostgreSQL
            # role is one): the rollup trigger would count each record one by one, and the
            # deferred foreign-key checks would queue tens of millions of events until COMMIT.
            # The rows are consistent by construction, the rollups are built below in one
            # GROUP BY and their weeks noted in another. The events come in time order, and their
            # keys sort in it, so that every index grows at its end.
            cursor.execute("SET LOCAL session_replication_role = replica")
            for first in range(1, size + 1, CHUNK):
                last = min(first + CHUNK - 1, size)
                event = f"""
                    SELECT n, {base} + n AS entry_id,
                           ({user_ids})[{member} + 1] AS user_id,
                           ({models})[{_pick("n", 3, len(MODELS))} + 1] AS model,
                           'project-' || (({member}) * 5 + {_pick("n", 4, 3)}) %% {PROJECTS}
                               AS project,
                           {cost} AS cost,
                           now() - make_interval(secs => ({size} - n) * {DAYS * 86400 / size})
                               AS created_at, 'bench-' || lpad(n::text, 10, '0') AS key
                    FROM generate_series({first}, {last}) AS n
                """  # noqa: S608 - numbers and names generated here
                cursor.execute(
                    f"""
                    INSERT INTO credits_ledgerentry (id, account_id, amount, kind, source,
                                                     idempotency_key, created_at, actor_id,
                                                     reason)
                    SELECT entry_id, %s, -cost, 'usage', 'usage', key, created_at, user_id, ''
                    FROM ({event}) AS event
                    """,  # noqa: S608 - numbers and names generated here
                    [account.pk],
                )
                cursor.execute(
                    f"""
                    INSERT INTO credits_usagerecord (entry_id, account_id, user_id, request_id,
                        provider, model, project, input_tokens, output_tokens,
                        cache_read_tokens, cache_write_tokens, cost, created_at)
                    SELECT entry_id, %s, user_id, key, split_part(model, '/', 1),
                           split_part(model, '/', 2), project, 1000 + cost %% 50000,
                           100 + cost %% 4000, 0, 0, cost, created_at
                    FROM ({event}) AS event
                    """,  # noqa: S608 - numbers and names generated here
                    [account.pk],
                )
                print(f"  {last:,} events written", flush=True)
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
                "INSERT INTO analytics_usageweek (account_id, start, summed) SELECT DISTINCT"
                " account_id, analytics_week_start(day), false FROM analytics_dailyusage"
                " WHERE account_id = %s",
                [account.pk],
            )
            cursor.execute("SET LOCAL session_replication_role = DEFAULT")
            cursor.execute(
                "UPDATE credits_creditaccount SET balance = (SELECT SUM(amount) FROM"
                " credits_ledgerentry WHERE account_id = %s) WHERE id = %s",
                [account.pk, account.pk],
            )
    with connection.cursor() as cursor:
        cursor.execute(
            "ANALYZE credits_ledgerentry, credits_usagerecord, analytics_dailyusage,"
            " analytics_usageweek"
        )
    return _world(organization, account, owner, people[0], size, seconds=time.monotonic() - started)


def _world(
    organization: Any, account: Any, owner: Any, member: Any, size: int, *, seconds: float
) -> dict[str, Any]:
    from analytics.models import DailyUsage, UsageSettings

    # Members see the organization's totals beside their own: the heavier member page.
    UsageSettings.objects.update_or_create(
        organization=organization, defaults={"members_see_totals": True}
    )
    return {
        "organization": organization,
        "account": account,
        "owner": owner,
        "member": member,
        "events": size,
        "rollup_rows": DailyUsage.objects.filter(account=account).count(),
        "setup_seconds": round(seconds, 1),
    }


def _weekly_rows(account: Any) -> int:
    from analytics.models import WeeklyUsage

    return WeeklyUsage.objects.filter(account=account).count()


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


# (name, label, who, query string): every period for the owner and for a member, the owner's
# stacked and filtered views. {today}, {d92} and {d200} are dates; {member} a member's id.
PAGES: list[tuple[str, str, str, str]] = [
    ("owner_7d", "owner · last 7 days", "owner", "?period=7d"),
    ("owner_30d", "owner · last 30 days (default)", "owner", ""),
    ("owner_month", "owner · this month", "owner", "?period=month"),
    ("owner_last_month", "owner · last month", "owner", "?period=last-month"),
    ("owner_year", "owner · this year", "owner", "?period=year"),
    ("owner_all", "owner · all time", "owner", "?period=all"),
    (
        "owner_custom_92d",
        "owner · custom 92 days",
        "owner",
        "?period=custom&start={d92}&end={today}",
    ),
    (
        "owner_custom_200d",
        "owner · custom 200 days",
        "owner",
        "?period=custom&start={d200}&end={today}",
    ),
    ("owner_by_member_30d", "owner · 30 days by member", "owner", "?stack=member"),
    ("owner_by_member_all", "owner · all time by member", "owner", "?period=all&stack=member"),
    (
        "owner_one_member_year",
        "owner · this year, one member",
        "owner",
        "?period=year&member={member}",
    ),
    (
        "owner_one_model_all",
        "owner · all time, one model",
        "owner",
        "?period=all&provider=anthropic&model=claude-sonnet-4-5",
    ),
    (
        "owner_one_project_all",
        "owner · all time, one project",
        "owner",
        "?period=all&project=project-3",
    ),
    ("owner_one_provider_30d", "owner · 30 days, one provider", "owner", "?provider=openai"),
    ("member_7d", "member · last 7 days", "member", "?period=7d"),
    ("member_30d", "member · last 30 days (default)", "member", ""),
    ("member_month", "member · this month", "member", "?period=month"),
    ("member_last_month", "member · last month", "member", "?period=last-month"),
    ("member_year", "member · this year", "member", "?period=year"),
    ("member_all", "member · all time", "member", "?period=all"),
    (
        "member_custom_92d",
        "member · custom 92 days",
        "member",
        "?period=custom&start={d92}&end={today}",
    ),
]


def measure(worlds: dict[str, dict[str, Any]], renders: int) -> dict[str, Any]:
    from datetime import UTC, timedelta

    from django.test import Client
    from django.urls import reverse
    from django.utils import timezone

    today = timezone.now().astimezone(UTC).date()
    dates = {
        "today": today,
        "d92": today - timedelta(days=91),
        "d200": today - timedelta(days=199),
    }
    clients: dict[tuple[str, str], Any] = {}
    for size, world in worlds.items():
        for who in ("owner", "member"):
            client = Client()
            client.force_login(world[who])
            clients[(size, who)] = client
    pages: dict[str, dict[str, Any]] = {size: {} for size in worlds}
    for name, _, who, query in PAGES:
        targets = {
            size: (
                clients[(size, who)],
                reverse("org_usage", args=[world["organization"].pk])
                + query.format(member=world["member"].pk, **dates),
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
            "weekly_rollup_rows": world["weekly_rollup_rows"],
            "setup_seconds": world["setup_seconds"],
            "pages": pages[size],
            "csv_all_time": export(clients[(size, "owner")], url),
            "ledger_check": ledger_check(world),
        }
    return runs


def ledger_check(world: dict[str, Any]) -> dict[str, Any]:
    """The owner's all-time totals, as the page computes them, against the ledger's usage."""
    from datetime import UTC

    from django.db.models import Count, Sum
    from django.utils import timezone

    from analytics import selectors
    from analytics.filters import UsageFilters
    from analytics.periods import PeriodKind
    from credits.models import LedgerEntry

    scope = selectors.UsageScope(
        account_id=world["account"].pk,
        organization=world["organization"],
        viewer=world["owner"],
        sees_everyone=True,
    )
    filters = UsageFilters(period=PeriodKind.ALL_TIME)
    period = selectors.period_of(
        scope=scope, filters=filters, today=timezone.now().astimezone(UTC).date()
    )
    totals = selectors.usage_report(scope=scope, filters=filters, period=period).totals
    ledger = LedgerEntry.objects.filter(
        account=world["account"], kind=LedgerEntry.Kind.USAGE
    ).aggregate(cost=Sum("amount"), requests=Count("id"))
    return {
        "page_cost": totals.cost,
        "ledger_cost": -(ledger["cost"] or 0),
        "page_requests": totals.requests,
        "ledger_requests": ledger["requests"],
        "equal": (totals.cost, totals.requests) == (-(ledger["cost"] or 0), ledger["requests"]),
    }


def table(runs: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """The render times as a table (median, p95 in brackets), and the pages that missed."""
    sizes = list(runs)
    lines = [
        f"Usage page render, median (p95) ms; target < {TARGET_MS:.0f} ms at 1,000,000 events"
        " and more",
        f"{'page':<34}" + "".join(f"{int(size):>20,}" for size in sizes),
    ]
    missed = []
    for name, label, _, _ in PAGES:
        cells = []
        for size in sizes:
            figures = runs[size]["pages"][name]
            cell = f"{figures['median_ms']:.0f} ({figures['p95_ms']:.0f})"
            if int(size) >= 1_000_000 and figures["median_ms"] >= TARGET_MS:
                cell = "MISSED " + cell
                missed.append({"page": name, "events": int(size), **figures})
            cells.append(f"{cell:>20}")
        lines.append(f"{label:<34}" + "".join(cells))
    return lines, missed


def __getattr__(name: str) -> Any:
    """This module is also the benchmark's URLconf: the project's URLs with the analytics views
    in front (the same as the project's once `org_usage` points at them)."""
    if name == "urlpatterns":
        from analytics.urls import urlpatterns as analytics_urlpatterns
        from config.urls import urlpatterns as project_urlpatterns

        return [*analytics_urlpatterns, *project_urlpatterns]
    raise AttributeError(name)


def worlds_ready(sizes: list[int], *, fresh: bool) -> tuple[dict[str, dict[str, Any]], Any]:
    """Each size's organization, and its weeks summed as the hourly job would have."""
    from django.db import connection

    from analytics.services import usage_weeks_sum

    worlds = {}
    for size in sizes:
        print(f"bench usage_page: {size:,} events: setting up…", flush=True)
        world = organization_for(size, fresh=fresh)
        print(
            f"  {world['rollup_rows']:,} rollup rows"
            + (f", built in {world['setup_seconds']} s" if world["setup_seconds"] else ", reused"),
            flush=True,
        )
        worlds[str(size)] = world
    # The hourly job's work, then what autovacuum would do after it.
    started = time.monotonic()
    summed = usage_weeks_sum()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE analytics_weeklyusage, analytics_usageweek")
    print(f"  weeks summed: {summed} in {time.monotonic() - started:.1f} s", flush=True)
    for world in worlds.values():
        world["weekly_rollup_rows"] = _weekly_rows(world["account"])
    return worlds, summed


def verdicts(runs: dict[str, Any]) -> dict[str, Any]:
    """Print the table and the verdicts; what goes in the results file."""
    lines, missed = table(runs)
    print("\n".join(lines))
    equal = True
    for size, result in runs.items():
        csv = result["csv_all_time"]
        check = result["ledger_check"]
        print(
            f"{int(size):,} events ({result['rollup_rows']:,} daily and"
            f" {result['weekly_rollup_rows']:,} weekly rollup rows): csv all time"
            f" {csv['rows']:,} rows in {csv['seconds']} s, Python peak"
            f" {csv['python_peak_mib']} MiB, RSS growth {csv['rss_growth_mib']} MiB; all-time"
            f" totals {'==' if check['equal'] else '!='} ledger"
            f" ({check['page_requests']:,} requests, {check['page_cost']:,} µ$)",
            flush=True,
        )
        equal = equal and check["equal"]

    verdict: dict[str, Any] = {
        "pages_missed": missed,
        "pages_under_300ms": not missed,
        "totals_equal_ledger": equal,
    }
    large = [size for size in runs if int(size) >= 1_000_000]
    if missed:
        worst = max(missed, key=lambda page: page["median_ms"])
        print(
            f"verdict: MISSED: {len(missed)} page(s) at or over {TARGET_MS:.0f} ms; the worst,"
            f" {worst['page']} at {worst['events']:,} events, {worst['median_ms']} ms"
            f" ({worst['median_ms'] - TARGET_MS:+.0f} ms)"
        )
    elif large:
        slowest = max(
            runs[size]["pages"][name]["median_ms"] for size in large for name, *_ in PAGES
        )
        print(
            f"verdict: every page under {TARGET_MS:.0f} ms at"
            f" {', '.join(f'{int(size):,}' for size in large)} events (slowest median"
            f" {slowest} ms): met"
        )
    if "10000" in runs and "1000000" in runs:
        small = runs["10000"]["pages"]["owner_30d"]["median_ms"]
        big = runs["1000000"]["pages"]["owner_30d"]["median_ms"]
        small_csv = runs["10000"]["csv_all_time"]["python_peak_mib"]
        large_csv = runs["1000000"]["csv_all_time"]["python_peak_mib"]
        verdict.update(
            ratio=round(big / small, 2),
            ratio_at_most_2x=big / small <= TARGET_RATIO,
            csv_python_peak_mib=[small_csv, large_csv],
            csv_memory_flat=large_csv <= max(small_csv * 2, small_csv + 2),
        )
        print(
            f"verdict: the default page at 1M events is {verdict['ratio']}x its 10k time (target"
            f" ≤ {TARGET_RATIO:.0f}x); CSV Python peak {small_csv} → {large_csv} MiB"
        )
    return verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=SIZES)
    parser.add_argument("--renders", type=int, default=15)
    parser.add_argument("--fresh", action="store_true", help="build the organizations again")
    options = parser.parse_args()

    prepare()
    django_setup()
    from django.conf import settings

    # The test client's host; the page is served as in production otherwise (DEBUG off).
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    settings.ROOT_URLCONF = "bench.usage_page"

    worlds, summed = worlds_ready([int(s) for s in options.sizes.split(",")], fresh=options.fresh)
    # The machine is shared: the cores busy with other work, before and after, say how loaded
    # it was while the pages were timed.
    load_before = common.machine_load()
    runs = measure(worlds, options.renders)
    load_after = common.machine_load()
    verdict = verdicts(runs)
    print(f"other work on the machine: {load_before} cores busy before, {load_after} after")
    path = common.results_write(
        "usage_page",
        {
            "machine": common.machine(),
            "other_load_cores": [load_before, load_after],
            "targets": {"page_ms": TARGET_MS, "ratio": TARGET_RATIO},
            "setup": {"weeks_summed": summed},
            "runs": runs,
            "verdict": verdict,
        },
    )
    print(f"results: {path.relative_to(ROOT)}")
    if not verdict["totals_equal_ledger"]:
        raise SystemExit("bench usage_page: the page's totals differ from the ledger")


if __name__ == "__main__":
    main()
