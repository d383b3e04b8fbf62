"""Writes of the analytics app: the Usage tab's visibility setting, the weekly rollups, and what
goes when an organization closes. (The daily rollups are written by a database trigger on the
usage records.)"""

from datetime import UTC, date, datetime, time, timedelta

from django.db import connection, transaction
from django.db.models import Max, Min
from django.utils import timezone

from accounts.models import User
from analytics.models import DailyUsage, SweptWeek, UsageSettings, UsageWeek, WeeklyUsage
from analytics.periods import week_last, week_start
from credits.models import CreditAccount
from organizations.models import Organization
from organizations.services import audit_record


def usage_visibility_set(
    *, actor: User, organization: Organization, members_see_totals: bool
) -> UsageSettings:
    """Whether members see the organization's totals beside their own usage. Members never see
    other members' rows, whatever this says."""
    with transaction.atomic():
        settings, _ = UsageSettings.objects.update_or_create(
            organization=organization,
            defaults={
                "members_see_totals": members_see_totals,
                "updated_at": timezone.now(),
                "updated_by": actor,
            },
        )
        audit_record(
            organization=organization,
            actor=actor,
            action="usage.visibility",
            target=organization.name,
            members_see_totals=members_see_totals,
        )
    return settings


def organization_usage_delete(*, organization: Organization) -> dict[str, int]:
    """Closing an organization (`dunning.closing`): its usage rollups (daily and weekly rows,
    counted together) and settings go. Its weeks
    go first: a weekly sum in progress holds its weeks' rows, so the deletion waits for it to
    commit and then deletes the weekly rows it wrote too."""
    UsageWeek.objects.filter(account__organization=organization).delete()
    weekly, _ = WeeklyUsage.objects.filter(account__organization=organization).delete()
    rollups, _ = DailyUsage.objects.filter(account__organization=organization).delete()
    UsageSettings.objects.filter(organization=organization).delete()
    return {"usage_rollups": rollups + weekly}


# Weekly rollups

WEEKS_PER_BATCH = 500  # (account, week) pairs summed per transaction

_COUNTS = "requests, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost"
_KEY = "account_id, user_id, provider, model, project"
# Claim the week's unsummed accounts, skipping those a late record holds right now (they stay
# unsummed for the next run), then replace their weekly rows by the sum of their daily rows.
_CLAIM_SQL = f"""
    UPDATE {UsageWeek._meta.db_table} SET summed = true
    WHERE id IN (
        SELECT id FROM {UsageWeek._meta.db_table} WHERE start = %s AND NOT summed
        ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
    )
    RETURNING account_id
"""  # noqa: S608 - table names from the models
_CLEAR_SQL = f"""
    DELETE FROM {WeeklyUsage._meta.db_table} WHERE start = %s AND account_id = ANY(%s)
"""  # noqa: S608 - table names from the models
_SUM_SQL = f"""
    INSERT INTO {WeeklyUsage._meta.db_table} ({_KEY}, start, {_COUNTS})
    SELECT {_KEY}, %s, {", ".join(f"SUM({c})" for c in _COUNTS.split(", "))}
    FROM {DailyUsage._meta.db_table}
    WHERE account_id = ANY(%s) AND day BETWEEN %s AND %s
    GROUP BY {_KEY}
"""  # noqa: S608 - table names from the models
# Note every account with daily rows in the weeks given (first days, last days).
_NOTE_SQL = f"""
    INSERT INTO {UsageWeek._meta.db_table} (account_id, start, summed)
    SELECT account.id, week.start, false
    FROM {CreditAccount._meta.db_table} AS account
    CROSS JOIN unnest(%s::date[], %s::date[]) AS week(start, last)
    WHERE EXISTS (
        SELECT 1 FROM {DailyUsage._meta.db_table} AS daily
        WHERE daily.account_id = account.id AND daily.day BETWEEN week.start AND week.last
    )
    ON CONFLICT (account_id, start) DO NOTHING
"""  # noqa: S608 - table names from the models
# A week claimed with no daily rows left (its organization was purged meanwhile) goes.
_FORGET_SQL = f"""
    DELETE FROM {UsageWeek._meta.db_table} AS week
    WHERE week.start = %s AND week.account_id = ANY(%s) AND NOT EXISTS (
        SELECT 1 FROM {DailyUsage._meta.db_table} AS daily
        WHERE daily.account_id = week.account_id AND daily.day BETWEEN %s AND %s
    )
"""  # noqa: S608 - table names from the models
# A client transaction of this database that began before the moment given and is still open:
# it may yet commit daily rows of a week that ended since (see migration 0004).
_OPEN_SINCE_SQL = """
    SELECT EXISTS (
        SELECT 1 FROM pg_stat_activity
        WHERE datname = current_database() AND backend_type = 'client backend'
            AND pid <> pg_backend_pid() AND xact_start < %s
    )
"""


def usage_weeks_sum() -> dict[str, int]:
    """Note the accounts with usage in each rollup week that has ended since the last run, then
    sum every ended week noted unsummed (those, and weeks a late record made stale) from its
    daily rows into its weekly rows. A week waits for a later run while a transaction that began
    before its end is still open: such a transaction may yet commit rows into the week without
    marking it. The clock is the database's, as in the trigger. Safe to run twice, and beside
    itself."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT (now() AT TIME ZONE 'UTC')::date")
        current = week_start(cursor.fetchone()[0])
    swept = _weeks_sweep(current)
    ended = (
        UsageWeek.objects.filter(summed=False, start__lt=current)
        .values_list("start", flat=True)
        .distinct()
        .order_by("start")
    )
    summed = waiting = 0
    for start in ended:
        if transactions_open_since(_end_of(start)):
            waiting += 1
            continue
        while batch := _week_sum(start):
            summed += batch
            if batch < WEEKS_PER_BATCH:
                break
    return {"weeks_swept": swept, "weeks_summed": summed, "weeks_waiting": waiting}


def _end_of(start: date) -> datetime:
    return datetime.combine(week_last(start) + timedelta(days=1), time(), tzinfo=UTC)


def _weeks_sweep(current: date) -> int:
    """Note the accounts of the weeks ended since the last sweep (all of them the first time),
    up to the last one no open transaction began before the end of."""
    last = SweptWeek.objects.aggregate(last=Max("start"))["last"]
    if last is not None:
        start = week_last(last) + timedelta(days=1)
    else:
        first_day = DailyUsage.objects.aggregate(first=Min("day"))["first"]
        if first_day is None:
            return 0
        start = week_start(first_day)
    weeks = []
    while start < current:
        weeks.append(start)
        start = week_last(start) + timedelta(days=1)
    while weeks and transactions_open_since(_end_of(weeks[-1])):
        weeks.pop()
    if weeks:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_NOTE_SQL, [weeks, [week_last(week) for week in weeks]])
            SweptWeek.objects.bulk_create(
                [SweptWeek(start=week) for week in weeks], ignore_conflicts=True
            )
    return len(weeks)


def transactions_open_since(moment: datetime) -> bool:
    """Whether another client transaction of this database began before `moment` and is still
    open. (pg_stat_activity shows the start of other sessions' transactions to the role they
    run as: the app's sessions are all one role.)"""
    with connection.cursor() as cursor:
        cursor.execute(_OPEN_SINCE_SQL, [moment])
        return bool(cursor.fetchone()[0])


def _week_sum(start: date) -> int:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, [start, WEEKS_PER_BATCH])
        accounts = [row[0] for row in cursor.fetchall()]
        if accounts:
            cursor.execute(_CLEAR_SQL, [start, accounts])
            cursor.execute(_SUM_SQL, [start, accounts, start, week_last(start)])
            cursor.execute(_FORGET_SQL, [start, accounts, start, week_last(start)])
    return len(accounts)
