"""The daily rollups, kept in step with the usage records by the code that writes them:
`credits.services.usage_record` calls `usage_rollup_add` inside its transaction, and the
retention purge calls `usage_rollups_purge` beside deleting the records."""

from datetime import UTC

from django.db import connection

from analytics.models import DailyUsage
from credits.models import UsageRecord

_TABLE = DailyUsage._meta.db_table
_COUNTS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost")
_ADD_SQL = f"""
    INSERT INTO {_TABLE} (account_id, day, user_id, provider, model, project, requests,
                          {", ".join(_COUNTS)})
    VALUES (%s, %s, %s, %s, %s, %s, 1, %s, %s, %s, %s, %s)
    ON CONFLICT (account_id, day, user_id, provider, model, project) DO UPDATE SET
        requests = {_TABLE}.requests + 1,
        {", ".join(f"{c} = {_TABLE}.{c} + EXCLUDED.{c}" for c in _COUNTS)}
"""  # noqa: S608 - table and column names from the model, values are parameters


def usage_rollup_add(*, usage: UsageRecord) -> None:
    """Count one usage record in its day's rollup row. One statement, in the caller's
    transaction: the event is counted if and only if the debit commits, and once."""
    with connection.cursor() as cursor:
        cursor.execute(
            _ADD_SQL,
            [
                usage.account_id,
                usage.created_at.astimezone(UTC).date(),
                usage.user_id,
                usage.provider,
                usage.model,
                usage.project,
                usage.input_tokens,
                usage.output_tokens,
                usage.cache_read_tokens,
                usage.cache_write_tokens,
                usage.cost,
            ],
        )


def usage_rollups_purge(*, account_id: int) -> None:
    """Retention: delete an account's rollups with its usage records."""
    DailyUsage.objects.filter(account_id=account_id).delete()
