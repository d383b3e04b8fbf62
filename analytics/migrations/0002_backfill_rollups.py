"""Count the usage recorded before the rollups existed. The table is new and empty here, and from
this migration on `usage_record` counts each event itself, so every event is counted once."""

from django.db import migrations

BACKFILL = """
INSERT INTO analytics_dailyusage (account_id, day, user_id, provider, model, project, requests,
    input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost)
SELECT account_id, (created_at AT TIME ZONE 'UTC')::date, user_id, provider, model, project,
    COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens),
    SUM(cache_write_tokens), SUM(cost)
FROM credits_usagerecord
GROUP BY account_id, (created_at AT TIME ZONE 'UTC')::date, user_id, provider, model, project
"""


class Migration(migrations.Migration):
    dependencies = [("analytics", "0001_rollups")]

    operations = [migrations.RunSQL(BACKFILL, reverse_sql="DELETE FROM analytics_dailyusage")]
