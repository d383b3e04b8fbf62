"""Holds, monthly budgets and token caps, inside the statements that spend.

What may be spent is `balance - held`. Every limit is a conditional upsert of a SpendCounter in
the same statement as the movement it limits (a hold's reservation counts until it is settled or
released). The functions:

- credits_usage_debit: as in 0006, spending only what is available, also within the member's
  monthly budget and the token's monthly cap, and keeping the price it charged (the receipt).
- credits_hold_create: reserves the list price of a request's maximum tokens.
- credits_hold_settle: debits the actual cost once and frees the rest; a cost above the hold
  takes the excess from what is available, never below zero, and records the shortfall.
- credits_hold_release: frees a hold; credits_holds_expire: frees those past their expiry.

A limit that refuses raises SQLSTATE KBDL1 (member per day), KBMB1 (member per month) or KBTB1
(token per month), which undoes the statement."""

from django.db import migrations

SQL = """
DROP FUNCTION credits_usage_debit(bigint, bigint, bigint, uuid, bigint[], text, bigint, text,
    text, text, bigint, bigint, bigint, bigint, timestamptz, timestamptz);

-- Add p_amount to a subject's spend of a period, unless that passes p_limit (then false).
CREATE FUNCTION credits_spend_add(p_account bigint, p_scope text, p_subject bigint,
                                  p_period date, p_amount bigint, p_limit bigint)
RETURNS boolean AS $$
BEGIN
    INSERT INTO credits_spendcounter AS c (account_id, scope, subject_id, period, spent)
    SELECT p_account, p_scope, p_subject, p_period, p_amount WHERE p_amount <= p_limit
    ON CONFLICT (account_id, scope, subject_id, period)
    DO UPDATE SET spent = c.spent + EXCLUDED.spent WHERE c.spent + EXCLUDED.spent <= p_limit;
    RETURN FOUND;
END;
$$ LANGUAGE plpgsql;

-- Charge p_amount to every limit of (account, member, token) that applies, in the periods of
-- p_at; raise the SQLSTATE of the first that refuses.
CREATE FUNCTION credits_limits_charge(p_account bigint, p_user bigint, p_token bigint,
                                      p_at timestamptz, p_amount bigint, p_daily bigint)
RETURNS void AS $$
DECLARE
    v_day date := (p_at AT TIME ZONE 'UTC')::date;
    v_month date := date_trunc('month', p_at AT TIME ZONE 'UTC')::date;
    v_limit bigint;
BEGIN
    IF p_daily IS NOT NULL
       AND NOT credits_spend_add(p_account, 'member_day', p_user, v_day, p_amount, p_daily) THEN
        RAISE EXCEPTION 'member daily limit reached' USING ERRCODE = 'KBDL1';
    END IF;
    SELECT b.monthly_limit INTO v_limit FROM credits_memberbudget b
     WHERE b.account_id = p_account AND b.user_id = p_user;
    IF v_limit IS NOT NULL
       AND NOT credits_spend_add(p_account, 'member_month', p_user, v_month, p_amount, v_limit)
    THEN
        RAISE EXCEPTION 'member monthly budget reached' USING ERRCODE = 'KBMB1';
    END IF;
    IF p_token IS NOT NULL THEN
        SELECT t.monthly_cap INTO v_limit FROM credits_apitoken t WHERE t.id = p_token;
        IF v_limit IS NOT NULL
           AND NOT credits_spend_add(NULL, 'token_month', p_token, v_month, p_amount, v_limit)
        THEN
            RAISE EXCEPTION 'token monthly cap reached' USING ERRCODE = 'KBTB1';
        END IF;
    END IF;
END;
$$ LANGUAGE plpgsql;

-- Move every counter that counted a hold (made at p_at) by p_delta, never below zero: a
-- settlement's actual cost instead of its reservation, or a release.
CREATE FUNCTION credits_limits_adjust(p_account bigint, p_user bigint, p_token bigint,
                                      p_at timestamptz, p_delta bigint)
RETURNS void AS $$
BEGIN
    UPDATE credits_spendcounter SET spent = greatest(spent + p_delta, 0)
     WHERE (account_id = p_account AND subject_id = p_user
            AND ((scope = 'member_day' AND period = (p_at AT TIME ZONE 'UTC')::date)
                 OR (scope = 'member_month'
                     AND period = date_trunc('month', p_at AT TIME ZONE 'UTC')::date)))
        OR (p_token IS NOT NULL AND account_id IS NULL AND scope = 'token_month'
            AND subject_id = p_token
            AND period = date_trunc('month', p_at AT TIME ZONE 'UTC')::date);
END;
$$ LANGUAGE plpgsql;

-- The token still works (not revoked, its user active), and the caller's context is current.
CREATE FUNCTION credits_caller_check(p_token bigint, p_organization uuid, p_versions bigint[])
RETURNS text AS $$
BEGIN
    IF p_token IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM credits_apitoken t JOIN accounts_user u ON u.id = t.user_id
        WHERE t.id = p_token AND t.revoked_at IS NULL AND u.is_active
    ) THEN
        RETURN 'unauthorized';
    END IF;
    IF p_versions IS NOT NULL AND p_versions IS DISTINCT FROM ARRAY[
        coalesce((SELECT version FROM credits_spendversion WHERE scope = 'prices'), 0),
        coalesce((SELECT version FROM credits_spendversion
                  WHERE scope = p_organization::text), 0)
    ] THEN
        RETURN 'stale';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION credits_usage_debit(
    p_account bigint, p_user bigint, p_token bigint, p_organization uuid, p_versions bigint[],
    p_request_id text, p_cost bigint, p_price bigint, p_provider text, p_model text,
    p_project text, p_input bigint, p_output bigint, p_cache_read bigint,
    p_cache_write bigint, p_now timestamptz, p_at timestamptz,
    OUT o_outcome text, OUT o_entry_id bigint, OUT o_balance bigint, OUT o_cost bigint,
    OUT o_topup_due boolean, OUT o_alert_due boolean)
AS $$
DECLARE
    v_at timestamptz := coalesce(p_at, p_now);
    v_daily bigint;
    v_first record;
BEGIN
    o_topup_due := false;
    o_alert_due := false;
    o_outcome := credits_caller_check(p_token, p_organization, p_versions);
    IF o_outcome IS NOT NULL THEN
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
    -- Only what is available (the balance less what holds reserve), never below it. The row
    -- lock is held from here to the commit.
    UPDATE credits_creditaccount a SET balance = a.balance - p_cost
     WHERE a.id = p_account AND a.balance - a.held >= p_cost
     RETURNING a.balance,
               a.auto_topup_enabled AND a.balance < a.auto_topup_threshold,
               a.low_balance_threshold IS NOT NULL AND a.balance < a.low_balance_threshold
                   AND NOT a.low_balance_alerted,
               a.member_daily_limit
          INTO o_balance, o_topup_due, o_alert_due, v_daily;
    IF NOT FOUND THEN
        o_outcome := 'insufficient';
        SELECT a.balance INTO o_balance FROM credits_creditaccount a WHERE a.id = p_account;
        RETURN;
    END IF;
    PERFORM credits_limits_charge(p_account, p_user, p_token, p_now, p_cost, v_daily);
    -- A racing retry of this request_id makes this INSERT fail on the unique key after the
    -- first commits: the whole statement is undone and the caller calls again ('duplicate').
    INSERT INTO credits_ledgerentry (account_id, amount, kind, source, idempotency_key,
                                     created_at, actor_id, reason)
    VALUES (p_account, -p_cost, 'usage', 'usage', p_request_id, v_at, p_user, '')
    RETURNING id INTO o_entry_id;
    INSERT INTO credits_usagerecord (entry_id, account_id, user_id, request_id, provider, model,
        project, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost,
        price_id, uncollected, created_at)
    VALUES (o_entry_id, p_account, p_user, p_request_id, p_provider, p_model, p_project,
        p_input, p_output, p_cache_read, p_cache_write, p_cost, p_price, 0, v_at);
    o_outcome := 'new';
    o_cost := p_cost;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION credits_hold_create(
    p_account bigint, p_user bigint, p_token bigint, p_organization uuid, p_versions bigint[],
    p_request_id text, p_amount bigint, p_price bigint, p_provider text, p_model text,
    p_project text, p_max_input bigint, p_max_output bigint, p_max_cache_read bigint,
    p_max_cache_write bigint, p_now timestamptz, p_expires_at timestamptz,
    OUT o_outcome text, OUT o_hold_id bigint, OUT o_amount bigint, OUT o_available bigint,
    OUT o_expires_at timestamptz)
AS $$
DECLARE
    v_daily bigint;
    v_first record;
BEGIN
    o_outcome := credits_caller_check(p_token, p_organization, p_versions);
    IF o_outcome IS NOT NULL THEN
        RETURN;
    END IF;
    SELECT h.id, h.amount, h.expires_at, h.provider, h.model, h.max_input_tokens,
           h.max_output_tokens, h.max_cache_read_tokens, h.max_cache_write_tokens
      INTO v_first
      FROM credits_hold h WHERE h.account_id = p_account AND h.request_id = p_request_id;
    IF FOUND THEN
        o_hold_id := v_first.id;
        o_amount := v_first.amount;
        o_expires_at := v_first.expires_at;
        SELECT a.balance - a.held INTO o_available
          FROM credits_creditaccount a WHERE a.id = p_account;
        IF (v_first.provider, v_first.model, v_first.max_input_tokens, v_first.max_output_tokens,
            v_first.max_cache_read_tokens, v_first.max_cache_write_tokens)
           IS NOT DISTINCT FROM (p_provider, p_model, p_max_input, p_max_output,
                                 p_max_cache_read, p_max_cache_write) THEN
            o_outcome := 'duplicate';
        ELSE
            o_outcome := 'conflict';
        END IF;
        RETURN;
    END IF;
    UPDATE credits_creditaccount a SET held = a.held + p_amount
     WHERE a.id = p_account AND a.balance - a.held >= p_amount
     RETURNING a.balance - a.held, a.member_daily_limit INTO o_available, v_daily;
    IF NOT FOUND THEN
        o_outcome := 'insufficient';
        SELECT a.balance - a.held INTO o_available
          FROM credits_creditaccount a WHERE a.id = p_account;
        RETURN;
    END IF;
    PERFORM credits_limits_charge(p_account, p_user, p_token, p_now, p_amount, v_daily);
    INSERT INTO credits_hold (account_id, user_id, token_id, request_id, provider, model,
        project, price_id, max_input_tokens, max_output_tokens, max_cache_read_tokens,
        max_cache_write_tokens, amount, status, created_at, expires_at)
    VALUES (p_account, p_user, p_token, p_request_id, p_provider, p_model, p_project, p_price,
        p_max_input, p_max_output, p_max_cache_read, p_max_cache_write, p_amount, 'active',
        p_now, p_expires_at)
    RETURNING id INTO o_hold_id;
    o_outcome := 'new';
    o_amount := p_amount;
    o_expires_at := p_expires_at;
END;
$$ LANGUAGE plpgsql;

-- Free one active hold (inside the caller's statement): 'released' or 'expired'.
CREATE FUNCTION credits_hold_free(p_hold bigint, p_status text, p_now timestamptz)
RETURNS bigint AS $$
DECLARE
    v_hold record;
BEGIN
    UPDATE credits_hold h SET status = p_status, ended_at = p_now, released = h.amount
     WHERE h.id = p_hold AND h.status = 'active'
     RETURNING h.account_id, h.user_id, h.token_id, h.amount, h.created_at INTO v_hold;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    UPDATE credits_creditaccount SET held = held - v_hold.amount WHERE id = v_hold.account_id;
    PERFORM credits_limits_adjust(v_hold.account_id, v_hold.user_id, v_hold.token_id,
                                  v_hold.created_at, -v_hold.amount);
    RETURN v_hold.amount;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION credits_hold_settle(
    p_hold bigint, p_account bigint, p_user bigint, p_token bigint, p_cost bigint,
    p_input bigint, p_output bigint, p_cache_read bigint, p_cache_write bigint,
    p_now timestamptz,
    OUT o_outcome text, OUT o_entry_id bigint, OUT o_balance bigint, OUT o_cost bigint,
    OUT o_released bigint, OUT o_uncollected bigint, OUT o_topup_due boolean,
    OUT o_alert_due boolean)
AS $$
DECLARE
    v_hold record;
    v_account record;
    v_charged bigint;
BEGIN
    o_topup_due := false;
    o_alert_due := false;
    o_outcome := credits_caller_check(p_token, NULL, NULL);
    IF o_outcome IS NOT NULL THEN
        RETURN;
    END IF;
    -- The account's row first, then the hold's: the order every movement of the account takes.
    SELECT a.balance, a.held INTO v_account FROM credits_creditaccount a
     WHERE a.id = p_account FOR UPDATE;
    SELECT h.* INTO v_hold FROM credits_hold h
     WHERE h.id = p_hold AND h.account_id = p_account AND h.user_id = p_user FOR UPDATE;
    IF NOT FOUND THEN
        o_outcome := 'not_found';
        RETURN;
    END IF;
    IF v_hold.status = 'settled' THEN
        SELECT r.entry_id INTO o_entry_id FROM credits_usagerecord r
         WHERE r.entry_id = v_hold.entry_id AND r.input_tokens = p_input
           AND r.output_tokens = p_output AND r.cache_read_tokens = p_cache_read
           AND r.cache_write_tokens = p_cache_write;
        o_outcome := CASE WHEN FOUND THEN 'duplicate' ELSE 'conflict' END;
        o_entry_id := v_hold.entry_id;
        o_balance := v_hold.balance_after;
        o_cost := v_hold.cost;
        o_released := v_hold.released;
        o_uncollected := v_hold.uncollected;
        RETURN;
    END IF;
    IF v_hold.status <> 'active' THEN
        o_outcome := v_hold.status;  -- released or expired: nothing to settle
        RETURN;
    END IF;
    IF v_hold.expires_at <= p_now THEN
        PERFORM credits_hold_free(p_hold, 'expired', p_now);
        o_outcome := 'expired';
        RETURN;
    END IF;
    -- What this settlement may take: what is available once its own reservation is freed.
    v_charged := greatest(0, least(p_cost, v_account.balance - v_account.held + v_hold.amount));
    UPDATE credits_creditaccount a
       SET balance = a.balance - v_charged, held = a.held - v_hold.amount
     WHERE a.id = p_account
     RETURNING a.balance,
               a.auto_topup_enabled AND a.balance < a.auto_topup_threshold,
               a.low_balance_threshold IS NOT NULL AND a.balance < a.low_balance_threshold
                   AND NOT a.low_balance_alerted
          INTO o_balance, o_topup_due, o_alert_due;
    PERFORM credits_limits_adjust(p_account, p_user, v_hold.token_id, v_hold.created_at,
                                  v_charged - v_hold.amount);
    INSERT INTO credits_ledgerentry (account_id, amount, kind, source, idempotency_key,
                                     created_at, actor_id, reason)
    VALUES (p_account, -v_charged, 'usage', 'hold', v_hold.request_id, p_now, p_user, '')
    RETURNING id INTO o_entry_id;
    o_uncollected := p_cost - v_charged;
    o_released := greatest(v_hold.amount - v_charged, 0);
    o_cost := v_charged;
    INSERT INTO credits_usagerecord (entry_id, account_id, user_id, request_id, provider, model,
        project, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost,
        price_id, uncollected, created_at)
    VALUES (o_entry_id, p_account, p_user, v_hold.request_id, v_hold.provider, v_hold.model,
        v_hold.project, p_input, p_output, p_cache_read, p_cache_write, v_charged,
        v_hold.price_id, o_uncollected, p_now);
    UPDATE credits_hold SET status = 'settled', ended_at = p_now, entry_id = o_entry_id,
        cost = v_charged, released = o_released, uncollected = o_uncollected,
        balance_after = o_balance
     WHERE id = p_hold;
    o_outcome := 'new';
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION credits_hold_release(
    p_hold bigint, p_account bigint, p_user bigint, p_token bigint, p_now timestamptz,
    OUT o_outcome text, OUT o_released bigint, OUT o_available bigint)
AS $$
DECLARE
    v_status text;
BEGIN
    o_outcome := credits_caller_check(p_token, NULL, NULL);
    IF o_outcome IS NOT NULL THEN
        RETURN;
    END IF;
    PERFORM 1 FROM credits_creditaccount a WHERE a.id = p_account FOR UPDATE;
    SELECT h.status INTO v_status FROM credits_hold h
     WHERE h.id = p_hold AND h.account_id = p_account AND h.user_id = p_user FOR UPDATE;
    IF NOT FOUND THEN
        o_outcome := 'not_found';
    ELSIF v_status = 'active' THEN
        o_released := credits_hold_free(p_hold, 'released', p_now);
        o_outcome := 'released';
    ELSE
        o_outcome := v_status;  -- settled, or already released or expired
        SELECT h.released INTO o_released FROM credits_hold h WHERE h.id = p_hold;
    END IF;
    SELECT a.balance - a.held INTO o_available FROM credits_creditaccount a WHERE a.id = p_account;
END;
$$ LANGUAGE plpgsql;

-- Beat: holds past their expiry are freed, nothing debited. Returns how many.
CREATE FUNCTION credits_holds_expire(p_now timestamptz, p_limit integer) RETURNS integer AS $$
DECLARE
    v_hold record;
    v_count integer := 0;
BEGIN
    FOR v_hold IN
        SELECT h.id, h.account_id FROM credits_hold h
         WHERE h.status = 'active' AND h.expires_at <= p_now
         ORDER BY h.expires_at LIMIT p_limit
    LOOP
        -- Account first, as every movement; a hold settled or released meanwhile is skipped.
        PERFORM 1 FROM credits_creditaccount a WHERE a.id = v_hold.account_id FOR UPDATE;
        IF credits_hold_free(v_hold.id, 'expired', p_now) IS NOT NULL THEN
            v_count := v_count + 1;
        END IF;
    END LOOP;
    RETURN v_count;
END;
$$ LANGUAGE plpgsql;
"""

DROP = """
DROP FUNCTION IF EXISTS credits_holds_expire(timestamptz, integer);
DROP FUNCTION IF EXISTS credits_hold_release(bigint, bigint, bigint, bigint, timestamptz);
DROP FUNCTION IF EXISTS credits_hold_settle(bigint, bigint, bigint, bigint, bigint, bigint,
    bigint, bigint, bigint, timestamptz);
DROP FUNCTION IF EXISTS credits_hold_free(bigint, text, timestamptz);
DROP FUNCTION IF EXISTS credits_hold_create(bigint, bigint, bigint, uuid, bigint[], text, bigint,
    bigint, text, text, text, bigint, bigint, bigint, bigint, timestamptz, timestamptz);
DROP FUNCTION IF EXISTS credits_usage_debit(bigint, bigint, bigint, uuid, bigint[], text, bigint,
    bigint, text, text, text, bigint, bigint, bigint, bigint, timestamptz, timestamptz);
DROP FUNCTION IF EXISTS credits_caller_check(bigint, uuid, bigint[]);
DROP FUNCTION IF EXISTS credits_limits_adjust(bigint, bigint, bigint, timestamptz, bigint);
DROP FUNCTION IF EXISTS credits_limits_charge(bigint, bigint, bigint, timestamptz, bigint, bigint);
DROP FUNCTION IF EXISTS credits_spend_add(bigint, text, bigint, date, bigint, bigint);
"""


class Migration(migrations.Migration):

    dependencies = [("credits", "0008_holds_budgets_receipts")]

    operations = [migrations.RunSQL(SQL, reverse_sql=DROP)]
