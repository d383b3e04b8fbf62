# The lifecycle's models move from `invoices` to `dunning`, the app of the failed-payment
# lifecycle. Only Django's state moves: the transitions keep their table, index and rows.

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('invoices', '0003_billing_profile_moves_to_billing'),
        ('organizations', '0002_billing_lifecycle'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='OrganizationLifecycle',
                    fields=[],
                    options={
                        'verbose_name': 'organization billing lifecycle',
                        'verbose_name_plural': 'organization billing lifecycles',
                        'proxy': True,
                        'indexes': [],
                        'constraints': [],
                    },
                    bases=('organizations.organization',),
                ),
                migrations.CreateModel(
                    name='LifecycleTransition',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('from_state', models.CharField(choices=[('active', 'Active'), ('grace', 'Grace period'), ('suspended', 'Suspended'), ('deleted', 'Deleted')], max_length=20)),
                        ('to_state', models.CharField(choices=[('active', 'Active'), ('grace', 'Grace period'), ('suspended', 'Suspended'), ('deleted', 'Deleted')], max_length=20)),
                        ('reason', models.CharField(max_length=300)),
                        ('details', models.JSONField(blank=True, default=dict)),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('actor', models.ForeignKey(blank=True, help_text='Empty when the system made the move (a payment, a sweep).', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('invoice', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='invoices.invoice')),
                        ('organization', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='lifecycle_transitions', to='organizations.organization')),
                    ],
                    options={
                        'db_table': 'invoices_lifecycletransition',
                        'indexes': [models.Index(fields=['organization', 'created_at'], name='invoices_li_organiz_eef3c6_idx')],
                    },
                ),
            ],
        ),
    ]
