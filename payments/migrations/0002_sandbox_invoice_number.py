from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("payments", "0001_initial")]

    operations = [
        migrations.RunSQL(
            "CREATE SEQUENCE IF NOT EXISTS sandbox_invoice_number START 1",
            "DROP SEQUENCE IF EXISTS sandbox_invoice_number",
        )
    ]
