"""The usage debit in one round trip, and the versions that let the API cache what it checks.

`credits_usage_debit(...)` does, inside the database and in one statement's transaction, what
`credits.ledger.usage_debit` did in seven round trips: the token and the context versions checked,
the retry answered from the first entry (p_now is the application's clock, which decides the
day of the daily limit; p_at back-dates the records of imports), the balance's conditional UPDATE, the member's daily
limit, the ledger and usage inserts (the rollup follows by analytics' trigger). Outcomes: new,
duplicate, conflict (the request_id names another request), insufficient, stale (the caller's
cached context changed: rebuild and call again), unauthorized (the token was revoked or its user
deactivated). The daily limit raises SQLSTATE KBDL1, which undoes the balance update.

`credits_spendversion` holds one version per organization and one for the price catalogue,
bumped by triggers on the tables whose facts the API caches, from a sequence (never repeated)."""

from django.db import migrations, models

SQL = """
CREATE SEQUENCE credits_spendversion_seq;

CREATE OR REPLACE FUNCTION credits_spend_version_bump(p_scope text) RETURNS void AS $$
    INSERT INTO credits_spendversion (scope, version)
    VALUES (p_scope, nextval('credits_spendversion_seq'))
    ON CONFLICT (scope) DO UPDATE SET version = EXCLUDED.version;
$$ LANGUAGE sql;

CREATE OR REPLACE FUNCTION credits_spend_version_of_organization() RETURNS trigger AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM credits_spend_version_bump(OLD.organization_id::text);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM credits_spend_version_bump(NEW.organization_id::text);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER credits_spend_version_membership
    AFTER INSERT OR DELETE OR UPDATE OF role, organization_id, user_id, created_at
    ON organizations_membership
    FOR EACH ROW EXECUTE FUNCTION credits_spend_version_of_organization();

CREATE TRIGGER credits_spend_version_seats_change
    AFTER INSERT OR DELETE ON seats_seatsubscription
    FOR EACH ROW EXECUTE FUNCTION credits_spend_version_of_organization();
CREATE TRIGGER credits_spend_version_seats_update
    AFTER UPDATE ON seats_seatsubscription
    FOR EACH ROW
    WHEN ((OLD.status, OLD.quantity, OLD.removing, OLD.organization_id)
          IS DISTINCT FROM (NEW.status, NEW.quantity, NEW.removing, NEW.organization_id))
    EXECUTE FUNCTION credits_spend_version_of_organization();

CREATE OR REPLACE FUNCTION credits_spend_version_of_billing_state() RETURNS trigger AS $$
BEGIN
    PERFORM credits_spend_version_bump(NEW.id::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER credits_spend_version_billing_state
    AFTER UPDATE OF billing_state ON organizations_organization
    FOR EACH ROW WHEN (OLD.billing_state IS DISTINCT FROM NEW.billing_state)
    EXECUTE FUNCTION credits_spend_version_of_billing_state();

CREATE OR REPLACE FUNCTION credits_spend_version_of_prices() RETURNS trigger AS $$
BEGIN
    PERFORM credits_spend_version_bump('prices');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER credits_spend_version_prices
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON credits_modelprice
    FOR EACH STATEMENT EXECUTE FUNCTION credits_spend_version_of_prices();

CREATE OR REPLACE FUNCTION credits_usage_debit(
    p_account bigint, p_user bigint, p_token bigint, p_organization uuid, p_versions bigint[],
    p_request_id text, p_cost bigint, p_provider text, p_model text, p_project text,
    p_input bigint, p_output bigint, p_cache_read bigint, p_cache_write bigint,
    p_now timestamptz, p_at timestamptz,
    OUT o_outcome text, OUT o_entry_id bigint, OUT o_balance bigint, OUT o_cost bigint,
    OUT o_topup_due boolean, OUT o_alert_due boolean)
AS $$
DECLARE
    v_at timestamptz := coalesce(p_at, p_now);
    v_limit bigint;
    v_first record;
BEGIN
    o_topup_due := false;
    o_alert_due := false;
    -- The token still works (not revoked, its user active).
    IF p_token IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM credits_apitoken t JOIN accounts_user u ON u.id = t.user_id
        WHERE t.id = p_token AND t.revoked_at IS NULL AND u.is_active
    ) THEN
        o_outcome := 'unauthorized';
        RETURN;
    END IF;
    -- What the caller checked (role, seat, suspension, price) is still true.
    IF p_versions IS NOT NULL AND p_versions IS DISTINCT FROM ARRAY[
        coalesce((SELECT version FROM credits_spendversion WHERE scope = 'prices'), 0),
        coalesce((SELECT version FROM credits_spendversion
                  WHERE scope = p_organization::text), 0)
    ] THEN
        o_outcome := 'stale';
        RETURN;
    END IF;
    -- A retry answers with the first result, if it is the same request.
    SELECT e.id, -e.amount AS cost, r.provider, r.model, r.input_tokens, r.output_tokens,
           r.cache_read_tokens, r.cache_write_tokens
      INTO v_first
      FROM credits_ledgerentry e LEFT JOIN credits_usagerecord r ON r.entry_id = e.id
     WHERE e.account_id = p_account AND e.source = 'usage' AND e.idempotency_key = p_request_id;
    IF FOUND THEN
        o_entry_id := v_first.id;
        o_cost := v_first.cost;
        SELECT a.balance INTO o_balance FROM credits_creditaccount a WHERE a.id = p_account;
        IF (v_first.provider, v_first.model, v_first.input_tokens, v_first.output_tokens,
            v_first.cache_read_tokens, v_first.cache_write_tokens)
           IS NOT DISTINCT FROM (p_provider, p_model, p_input, p_output, p_cache_read,
                                 p_cache_write) THEN
            o_outcome := 'duplicate';
        ELSE
            o_outcome := 'conflict';
        END IF;
        RETURN;
    END IF;
    -- The balance: never below zero. Its row lock is held from here to the commit.
    UPDATE credits_creditaccount a SET balance = a.balance - p_cost
     WHERE a.id = p_account AND a.balance >= p_cost
     RETURNING a.balance,
               a.auto_topup_enabled AND a.balance < a.auto_topup_threshold,
               a.low_balance_threshold IS NOT NULL AND a.balance < a.low_balance_threshold
                   AND NOT a.low_balance_alerted,
               a.member_daily_limit
          INTO o_balance, o_topup_due, o_alert_due, v_limit;
    IF NOT FOUND THEN
        o_outcome := 'insufficient';
        SELECT a.balance INTO o_balance FROM credits_creditaccount a WHERE a.id = p_account;
        RETURN;
    END IF;
    -- The member's spend of the UTC day, within the account's daily limit.
    IF v_limit IS NOT NULL THEN
        INSERT INTO credits_spendcounter AS c (account_id, scope, subject_id, period, spent)
        SELECT p_account, 'member_day', p_user, (p_now AT TIME ZONE 'UTC')::date, p_cost
         WHERE p_cost <= v_limit
        ON CONFLICT (account_id, scope, subject_id, period)
        DO UPDATE SET spent = c.spent + EXCLUDED.spent WHERE c.spent + EXCLUDED.spent <= v_limit;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'member daily limit reached' USING ERRCODE = 'KBDL1';
        END IF;
    END IF;
    -- A racing retry of this request_id makes this INSERT fail on the unique key after the
    -- first commits: the whole statement is undone and the caller calls again ('duplicate').
    INSERT INTO credits_ledgerentry (account_id, amount, kind, source, idempotency_key,
                                     created_at, actor_id, reason)
    VALUES (p_account, -p_cost, 'usage', 'usage', p_request_id, v_at, p_user, '')
    RETURNING id INTO o_entry_id;
    INSERT INTO credits_usagerecord (entry_id, account_id, user_id, request_id, provider, model,
        project, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost,
        created_at)
    VALUES (o_entry_id, p_account, p_user, p_request_id, p_provider, p_model, p_project,
        p_input, p_output, p_cache_read, p_cache_write, p_cost, v_at);
    o_outcome := 'new';
    o_cost := p_cost;
END;
$$ LANGUAGE plpgsql;
"""

DROP = """
DROP FUNCTION IF EXISTS credits_usage_debit(bigint, bigint, bigint, uuid, bigint[], text, bigint,
    text, text, text, bigint, bigint, bigint, bigint, timestamptz, timestamptz);
DROP TRIGGER IF EXISTS credits_spend_version_prices ON credits_modelprice;
DROP TRIGGER IF EXISTS credits_spend_version_billing_state ON organizations_organization;
DROP TRIGGER IF EXISTS credits_spend_version_seats_update ON seats_seatsubscription;
DROP TRIGGER IF EXISTS credits_spend_version_seats_change ON seats_seatsubscription;
DROP TRIGGER IF EXISTS credits_spend_version_membership ON organizations_membership;
DROP FUNCTION IF EXISTS credits_spend_version_of_prices();
DROP FUNCTION IF EXISTS credits_spend_version_of_billing_state();
DROP FUNCTION IF EXISTS credits_spend_version_of_organization();
DROP FUNCTION IF EXISTS credits_spend_version_bump(text);
DROP SEQUENCE IF EXISTS credits_spendversion_seq;
"""


class Migration(migrations.Migration):

    dependencies = [
        ('credits', '0005_ledger_key_namespaces_and_spend_counters'),
        ('organizations', '0002_billing_lifecycle'),
        ('seats', '0002_seat_plans'),
        ('accounts', '0002_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='SpendVersion',
            fields=[
                ('scope', models.CharField(max_length=64, primary_key=True, serialize=False)),
                ('version', models.BigIntegerField()),
            ],
        ),
        migrations.RunSQL(SQL, reverse_sql=DROP),
    ]
