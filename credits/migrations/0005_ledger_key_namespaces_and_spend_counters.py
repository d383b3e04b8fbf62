"""Ledger keys live in namespaces: unique per (account, source, key) instead of (account, key),
so that a client's request_id (always in `usage`) can never take a key the system uses.

Existing entries get their source from their kind; purchase credits, keyed "purchase:<id>"
until now, become key "<id>" in the `purchase` or `auto_topup` namespace. This is the one time
ledger rows are written after the fact: the append-only trigger is paused for it, in this
migration's transaction only."""

import django.db.models.deletion
from django.db import migrations, models

SOURCES = ["usage", "hold", "purchase", "auto_topup", "grant", "refund", "dispute", "expiry"]

BACKFILL = """
ALTER TABLE credits_ledgerentry DISABLE TRIGGER credits_ledger_append_only;
UPDATE credits_ledgerentry AS entry
SET source = CASE WHEN purchase.kind = 'auto_topup' THEN 'auto_topup' ELSE 'purchase' END,
    idempotency_key = purchase.id::text
FROM credits_purchase AS purchase
WHERE entry.kind = 'purchase' AND entry.account_id = purchase.account_id
    AND entry.idempotency_key = 'purchase:' || purchase.id::text;
UPDATE credits_ledgerentry SET source = 'purchase' WHERE kind = 'purchase' AND source = 'usage';
UPDATE credits_ledgerentry SET source = 'grant' WHERE kind IN ('grant', 'adjustment');
UPDATE credits_ledgerentry SET source = kind WHERE kind IN ('expiry', 'refund');
ALTER TABLE credits_ledgerentry ENABLE TRIGGER credits_ledger_append_only;
"""


class Migration(migrations.Migration):

    dependencies = [
        ('credits', '0004_purchase_invoice_details'),
    ]

    operations = [
        migrations.RemoveConstraint(model_name='ledgerentry', name='ledger_entry_idempotent'),
        migrations.AddField(
            model_name='ledgerentry',
            name='source',
            field=models.CharField(
                choices=[
                    ('usage', "Usage (the client's request_id)"),
                    ('hold', "Hold (the client's request_id)"),
                    ('purchase', 'Credit purchase (its id)'),
                    ('auto_topup', "Auto top-up (the purchase's id)"),
                    ('grant', 'Staff grant or adjustment'),
                    ('refund', "Refund (the gateway's refund id)"),
                    ('dispute', "Dispute (the gateway's dispute id)"),
                    ('expiry', 'Expiry'),
                ],
                default='usage',
                max_length=20,
            ),
            preserve_default=False,
        ),
        migrations.RunSQL(BACKFILL, reverse_sql=migrations.RunSQL.noop),
        migrations.AddConstraint(
            model_name='ledgerentry',
            constraint=models.UniqueConstraint(fields=('account', 'source', 'idempotency_key'), name='ledger_entry_idempotent_in_source'),
        ),
        migrations.AddConstraint(
            model_name='ledgerentry',
            constraint=models.CheckConstraint(condition=models.Q(('source__in', SOURCES)), name='ledger_entry_source_known'),
        ),
        migrations.CreateModel(
            name='SpendCounter',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('scope', models.CharField(choices=[('member_day', "A member's spending per UTC day")], max_length=20)),
                ('subject_id', models.BigIntegerField(help_text="The member's user id.")),
                ('period', models.DateField(help_text='The UTC day (or first day of the period).')),
                ('spent', models.BigIntegerField(default=0, help_text='Microdollars')),
                ('account', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='credits.creditaccount')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('account', 'scope', 'subject_id', 'period'), name='spend_counter_one_row'), models.CheckConstraint(condition=models.Q(('spent__gte', 0)), name='spend_counter_not_negative')],
            },
        ),
    ]
