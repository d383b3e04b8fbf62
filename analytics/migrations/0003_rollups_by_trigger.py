"""The daily rollups are kept by a trigger on the usage records: each record inserted is counted
in its UTC day's row in the same statement's transaction, once, whoever inserts it (a debit, a
settled hold, an import). Until now `credits.services.usage_record` called analytics to do it;
the trigger lets credits know nothing of analytics (apps import only downward)."""

from django.db import migrations

COUNTS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost")

CREATE = f"""
CREATE OR REPLACE FUNCTION analytics_usage_rollup_add() RETURNS trigger AS $$
BEGIN
    INSERT INTO analytics_dailyusage (account_id, day, user_id, provider, model, project,
        requests, {", ".join(COUNTS)})
    VALUES (NEW.account_id, (NEW.created_at AT TIME ZONE 'UTC')::date, NEW.user_id, NEW.provider,
        NEW.model, NEW.project, 1, {", ".join(f"NEW.{c}" for c in COUNTS)})
    ON CONFLICT (account_id, day, user_id, provider, model, project) DO UPDATE SET
        requests = analytics_dailyusage.requests + 1,
        {", ".join(f"{c} = analytics_dailyusage.{c} + EXCLUDED.{c}" for c in COUNTS)};
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER analytics_usage_rollup
    AFTER INSERT ON credits_usagerecord
    FOR EACH ROW EXECUTE FUNCTION analytics_usage_rollup_add();
"""
DROP = """
DROP TRIGGER IF EXISTS analytics_usage_rollup ON credits_usagerecord;
DROP FUNCTION IF EXISTS analytics_usage_rollup_add();
"""


class Migration(migrations.Migration):
    dependencies = [("analytics", "0002_backfill_rollups"), ("credits", "0003_drop_redundant_account_indexes")]

    operations = [migrations.RunSQL(CREATE, reverse_sql=DROP)]
