"""The ledger: the only code that moves credits. Each movement is one ledger row and one
conditional balance update in a single transaction, once per key in its namespace (the entry's
`source`): a retry finds the first entry and moves nothing, and a key that names a different
operation is refused loudly (LedgerKeyConflict), never taken as "already done".

The floor is zero for everything but refunds and chargebacks: those take the whole amount back
even when it was spent, and the account then owes the difference (`CreditAccount.owed`, raised in
the same UPDATE; the check constraint lets the balance go down to −owed and no further)."""

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Sum, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from accounts.models import User
from credits.exceptions import (
    DailyLimitReached,
    InsufficientBalance,
    LedgerKeyConflict,
    RequestIdConflict,
)
from credits.models import CreditAccount, LedgerEntry, SpendCounter, UsageRecord

logger = logging.getLogger(__name__)

Source = LedgerEntry.Source
# The namespaces whose entries may take the balance below zero (money that went back to the card).
CLAWBACK_SOURCES = frozenset({Source.REFUND, Source.DISPUTE})


def _same_entry(account_id: int, source: str, key: str) -> LedgerEntry | None:
    return (
        LedgerEntry.objects.filter(account_id=account_id, source=source, idempotency_key=key)
        .select_related("account")
        .first()
    )


def _conflict(entry: LedgerEntry, what: str) -> LedgerKeyConflict:
    logger.error(
        "ledger key conflict on account %s: %s/%s is entry %s (%s %s), not %s",
        entry.account_id,
        entry.source,
        entry.idempotency_key,
        entry.pk,
        entry.kind,
        entry.amount,
        what,
    )
    return LedgerKeyConflict(source=entry.source, key=entry.idempotency_key)


def ledger_credit(
    *,
    account_id: int,
    amount: int,
    kind: str,
    source: str,
    key: str,
    actor: User | None = None,
    reason: str = "",
) -> tuple[LedgerEntry, bool]:
    """Add (or, for adjustments, remove) money once per (source, key); never below zero, except
    in the refund and dispute namespaces, whose debits go through whatever the balance and leave
    the account owing the rest. Returns (entry, created); a repeat of the same operation (same
    kind and amount) returns the first entry and moves nothing; a different operation under the
    key raises."""
    accounts = CreditAccount.objects.filter(pk=account_id)
    if source not in CLAWBACK_SOURCES:
        accounts = accounts.filter(balance__gte=-amount)
    try:
        with transaction.atomic():
            entry = LedgerEntry.objects.create(
                account_id=account_id,
                amount=amount,
                kind=kind,
                source=source,
                idempotency_key=key,
                actor=actor,
                reason=reason,
            )
            # `owed` follows the balance below zero in this one statement (read with the old
            # values): any other path that took the balance below zero would break the check.
            updated = accounts.update(
                balance=F("balance") + amount,
                owed=Greatest(Value(0), -(F("balance") + amount)),
            )
            if not updated:
                raise InsufficientBalance
    except IntegrityError:
        known = _same_entry(account_id, source, key)
        if known is None:
            raise
        if (known.kind, known.amount) != (kind, amount):
            raise _conflict(known, f"{kind} {amount}") from None
        return known, False
    if amount > 0:
        # Re-arm the low-balance alert once the balance is back at or above its threshold.
        CreditAccount.objects.filter(
            pk=account_id, low_balance_alerted=True, balance__gte=F("low_balance_threshold")
        ).update(low_balance_alerted=False)
    return entry, True


@dataclass(frozen=True)
class Debit:
    entry: LedgerEntry
    usage: UsageRecord
    balance: int
    created: bool
    # What the follow-ups need, read by the debit's own UPDATE (only for a new debit).
    topup_due: bool = False
    alert_due: bool = False


_DEBIT_SQL = f"""
    UPDATE {CreditAccount._meta.db_table} SET balance = balance - %s
    WHERE id = %s AND balance >= %s
    RETURNING balance, auto_topup_enabled AND balance < auto_topup_threshold,
              low_balance_threshold IS NOT NULL AND balance < low_balance_threshold
              AND NOT low_balance_alerted
"""  # noqa: S608 - table name from the model, values are parameters

_COUNTER = SpendCounter._meta.db_table
_ACCOUNT = CreditAccount._meta.db_table
# Add to a member's spend of the day only while it stays within the account's daily limit, as
# read in this same statement: two debits racing for the last cents of a limit queue on the
# counter row, and the second one sees the first one's spend.
_DAY_SPEND_SQL = f"""
    INSERT INTO {_COUNTER} AS counter (account_id, scope, subject_id, period, spent)
    SELECT %(account)s, %(scope)s, %(user)s, %(day)s, %(cost)s
    FROM {_ACCOUNT} WHERE id = %(account)s
        AND %(cost)s <= COALESCE(member_daily_limit, %(cost)s)
    ON CONFLICT (account_id, scope, subject_id, period) DO UPDATE
    SET spent = counter.spent + EXCLUDED.spent
    WHERE counter.spent + EXCLUDED.spent <= COALESCE(
        (SELECT member_daily_limit FROM {_ACCOUNT} WHERE id = %(account)s),
        counter.spent + EXCLUDED.spent
    )
    RETURNING spent
"""  # noqa: S608 - table names from the models, values are parameters


def _day_spend_add(*, account_id: int, user_id: int, day: date, cost: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            _DAY_SPEND_SQL,
            {
                "account": account_id,
                "scope": SpendCounter.Scope.MEMBER_DAY,
                "user": user_id,
                "day": day,
                "cost": cost,
            },
        )
        if cursor.fetchone() is None:
            raise DailyLimitReached


def day_spend_seed(*, account_id: int, day: date) -> None:
    """A daily limit starts counting from what each member already spent that day (the usage
    records), so setting one mid-day does not hand out a fresh allowance."""
    start = datetime.combine(day, time.min, tzinfo=UTC)
    spent = (
        UsageRecord.objects.filter(account_id=account_id, created_at__gte=start, user__isnull=False)
        .values("user_id")
        .annotate(total=Sum("cost"))
    )
    for row in spent:
        SpendCounter.objects.update_or_create(
            account_id=account_id,
            scope=SpendCounter.Scope.MEMBER_DAY,
            subject_id=row["user_id"],
            period=day,
            defaults={"spent": row["total"]},
        )


def usage_debit(
    *,
    account: CreditAccount,
    user: User,
    cost: int,
    request_id: str,
    provider: str,
    model: str,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
    project: str = "",
    at: datetime | None = None,
) -> Debit:
    """Debit `cost` once per request_id (the `usage` namespace), never below zero, within the
    member's daily limit: the inserts, the limit's conditional upsert and one conditional UPDATE
    of the balance (which also reads what the follow-ups need), in one transaction. The same
    request_id for another request raises RequestIdConflict. `at` back-dates the records
    (imports and demo history only)."""
    now = at or timezone.now()
    try:
        with transaction.atomic():
            # Inserts first: a repeated request_id stops at the unique key before anything
            # else, and the account row is locked (by the UPDATE) only from the last statement
            # to COMMIT, so that debits on one busy account queue as briefly as they can.
            entry = LedgerEntry.objects.create(
                account_id=account.pk,
                amount=-cost,
                kind=LedgerEntry.Kind.USAGE,
                source=Source.USAGE,
                idempotency_key=request_id,
                actor=user,
                created_at=now,
            )
            usage = UsageRecord.objects.create(
                entry=entry,
                account_id=account.pk,
                user=user,
                request_id=request_id,
                provider=provider,
                model=model,
                project=project,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cache_read_tokens=cache_read_tokens,
                cache_write_tokens=cache_write_tokens,
                cost=cost,
                created_at=now,
            )
            if account.member_daily_limit is not None:
                _day_spend_add(
                    account_id=account.pk, user_id=user.pk, day=timezone.now().date(), cost=cost
                )
            with connection.cursor() as cursor:
                cursor.execute(_DEBIT_SQL, [cost, account.pk, cost])
                row = cursor.fetchone()
            if row is None:
                raise InsufficientBalance
            balance, topup_due, alert_due = row
    except IntegrityError:
        # This request_id was debited before (or is being debited by a racing retry, which
        # the unique key made us wait for): answer with that first result.
        known = _same_entry(account.pk, Source.USAGE, request_id)
        if known is None:
            raise
        first = UsageRecord.objects.get(entry=known)
        asked = (
            provider,
            model,
            input_tokens,
            output_tokens,
            cache_read_tokens,
            cache_write_tokens,
        )
        stored = (
            first.provider,
            first.model,
            first.input_tokens,
            first.output_tokens,
            first.cache_read_tokens,
            first.cache_write_tokens,
        )
        if asked != stored:
            raise RequestIdConflict(request_id=request_id) from None
        return Debit(entry=known, usage=first, balance=known.account.balance, created=False)
    return Debit(
        entry=entry,
        usage=usage,
        balance=balance,
        created=True,
        topup_due=bool(topup_due),
        alert_due=bool(alert_due),
    )
