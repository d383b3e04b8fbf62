"""Benchmark: the dunning sweep over 100,000 organizations of which 100 are due.

Runs in a database of its own (`<DATABASE name>_bench_dunning`, created, migrated and dropped
here), so it never touches development or test data:

    DEBUG=1 .venv/bin/python bench/dunning_sweep.py

Prints the query plan of the sweep's read (it must use the partial index `organization_grace_due`,
not scan the table) and the time of one full sweep (target: under 1 second).
"""

import os
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

TOTAL = 100_000
DUE = 100
IN_GRACE_NOT_DUE = 400
SUSPENDED = 500
TARGET_SECONDS = 1.0


def populate() -> None:
    from accounts.models import User
    from organizations.models import Membership, Organization
    from organizations.roles import Role

    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO organizations_organization (id, name, created_at, billing_state)
            SELECT gen_random_uuid(), 'Organization ' || n, %s, 'active'
            FROM generate_series(1, %s) AS n
            """,
            [now - timedelta(days=90), TOTAL],
        )
    ids = list(Organization.objects.order_by("pk").values_list("pk", flat=True)[: DUE + 900])
    due, waiting, suspended = ids[:DUE], ids[DUE : DUE + IN_GRACE_NOT_DUE], ids[DUE + 400 :]
    Organization.objects.filter(pk__in=due).update(
        billing_state="grace", grace_ends_at=now - timedelta(minutes=3), billing_state_since=now
    )
    Organization.objects.filter(pk__in=waiting).update(
        billing_state="grace", grace_ends_at=now + timedelta(days=2), billing_state_since=now
    )
    Organization.objects.filter(pk__in=suspended[:SUSPENDED]).update(
        billing_state="suspended", suspended_at=now - timedelta(days=5), billing_state_since=now
    )
    # The due ones have an owner to email, as real ones would.
    owners = User.objects.bulk_create(User(email=f"owner{n}@bench.test") for n in range(DUE))
    Membership.objects.bulk_create(
        Membership(organization_id=org_id, user=owner, role=Role.OWNER)
        for org_id, owner in zip(due, owners, strict=True)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def explain() -> str:
    from dunning.lifecycle import State
    from organizations.models import Organization

    due = Organization.objects.filter(
        billing_state=State.GRACE, grace_ends_at__lte=timezone.now()
    ).order_by("grace_ends_at")[:1000]
    return due.explain(analyze=True, buffers=True)


def warm_up() -> None:
    """What a running worker has already done once: load the URL patterns and compile the email
    templates. Without it the first sweep of a fresh process pays ~0.3 s more, once."""
    from django.template.loader import get_template
    from django.urls import reverse

    reverse("home")
    get_template("emails/billing_suspended.txt")


def main() -> int:
    from dunning import sweeps
    from organizations.models import Organization

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    default = settings.DATABASES["default"]
    original_name = default["NAME"]
    default.setdefault("TEST", {})["NAME"] = f"{original_name}_bench_dunning"
    creation = connection.creation
    print(f"Creating {default['TEST']['NAME']} and migrating it…", flush=True)
    creation.create_test_db(verbosity=0, autoclobber=True, serialize=False, keepdb=False)
    try:
        started = time.perf_counter()
        populate()
        print(
            f"{Organization.objects.count():,} organizations "
            f"({DUE} due, {IN_GRACE_NOT_DUE} in grace not yet due, {SUSPENDED} suspended) "
            f"in {time.perf_counter() - started:.1f} s\n"
        )
        print("Plan of the sweep's read:\n" + explain() + "\n")
        warm_up()
        started = time.perf_counter()
        if os.environ.get("BENCH_PROFILE"):
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            result = profiler.runcall(sweeps.dunning_sweep)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        else:
            result = sweeps.dunning_sweep()
        elapsed = time.perf_counter() - started
        suspended = Organization.objects.filter(billing_state="suspended").count()
        print(f"dunning_sweep() -> {result} in {elapsed * 1000:.0f} ms")
        print(f"suspended now: {suspended} (was {SUSPENDED})")
        started = time.perf_counter()
        again = sweeps.dunning_sweep()
        print(f"second run -> {again} in {(time.perf_counter() - started) * 1000:.1f} ms")
        ok = (
            result["suspended"] == DUE and suspended == SUSPENDED + DUE and elapsed < TARGET_SECONDS
        )
        print(f"target under {TARGET_SECONDS:.0f} s: {'met' if ok else 'MISSED'}")
        return 0 if ok else 1
    finally:
        creation.destroy_test_db(original_name, verbosity=0)
        print(f"Dropped {default['TEST']['NAME']}.")


if __name__ == "__main__":
    sys.exit(main())
