# The billing profile now lives in `billing` (billing.0001 took over its table): invoices point at
# it there. State only; the database already has the same table and foreign key.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('invoices', '0002_invoices_and_lifecycle'),
        ('billing', '0001_billing_profile'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.AlterField(
                    model_name='invoice',
                    name='billing_profile',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='invoices', to='billing.billingprofile'),
                ),
                migrations.DeleteModel(name='BillingProfile'),
            ],
        ),
    ]
