# The billing profile moves from `invoices` to `billing` (who pays sits below the apps that
# charge). Only Django's state moves: the table keeps its name and its rows.

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('invoices', '0002_invoices_and_lifecycle'),
        ('organizations', '0002_billing_lifecycle'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='BillingProfile',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('gateway_customer_id', models.CharField(blank=True, db_index=True, max_length=80)),
                        ('company_name', models.CharField(blank=True, max_length=200)),
                        ('billing_email', models.EmailField(blank=True, max_length=254)),
                        ('address_line1', models.CharField(blank=True, max_length=200)),
                        ('address_line2', models.CharField(blank=True, max_length=200)),
                        ('city', models.CharField(blank=True, max_length=100)),
                        ('postal_code', models.CharField(blank=True, max_length=20)),
                        ('state', models.CharField(blank=True, max_length=100)),
                        ('country', models.CharField(blank=True, help_text='ISO 3166 code, e.g. DE', max_length=2)),
                        ('tax_id', models.CharField(blank=True, max_length=40)),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('organization', models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='billing_profile', to='organizations.organization')),
                        ('user', models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='billing_profile', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'invoices_billingprofile',
                        'constraints': [models.CheckConstraint(condition=models.Q(('organization__isnull', False), ('user__isnull', False), _negated=True), name='billing_profile_one_payer')],
                    },
                ),
            ],
        ),
    ]
