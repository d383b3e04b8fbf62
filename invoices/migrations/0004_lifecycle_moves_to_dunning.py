# The lifecycle's models now live in `dunning` (dunning.0001 took over the table). State only.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('invoices', '0003_billing_profile_moves_to_billing'),
        ('dunning', '0001_lifecycle'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.DeleteModel(name='LifecycleTransition'),
                migrations.DeleteModel(name='OrganizationLifecycle'),
            ],
        ),
    ]
