import json
from datetime import date
from pathlib import Path

from django.db import migrations

APPEND_ONLY = """
CREATE OR REPLACE FUNCTION credits_ledger_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the credit ledger is append-only: % refused', TG_OP;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER credits_ledger_append_only
    BEFORE UPDATE OR DELETE ON credits_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION credits_ledger_append_only();
"""
DROP = """
DROP TRIGGER IF EXISTS credits_ledger_append_only ON credits_ledgerentry;
DROP FUNCTION IF EXISTS credits_ledger_append_only();
"""


def load_prices(apps, schema_editor):  # type: ignore[no-untyped-def]
    ModelPrice = apps.get_model("credits", "ModelPrice")
    data = json.loads((Path(__file__).resolve().parent.parent / "data" / "model_prices.json").read_text())
    for row in data["prices"]:
        ModelPrice.objects.get_or_create(
            provider=row["provider"],
            model_id=row["model_id"],
            effective_from=date.fromisoformat(row["effective_from"]),
            defaults={
                "name": row["name"],
                "input_price": row["input"],
                "output_price": row["output"],
                "cache_read_price": row["cache_read"],
                "cache_write_price": row["cache_write"],
                "source_url": row["source_url"],
                "source_date": date.fromisoformat(row["source_date"]),
            },
        )


class Migration(migrations.Migration):
    dependencies = [("credits", "0001_initial")]

    operations = [
        migrations.RunSQL(APPEND_ONLY, DROP),
        migrations.RunPython(load_prices, migrations.RunPython.noop),
    ]
