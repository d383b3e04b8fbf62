"""The ledger: the only code that moves credits. Each movement is one ledger row and one
conditional balance update in a single transaction, once per key in its namespace (the entry's
`source`): a retry finds the first entry and moves nothing, and a key that names a different
operation is refused loudly (LedgerKeyConflict), never taken as "already done"."""

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any
from uuid import UUID

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F, Sum
from django.utils import timezone

from accounts.models import User
from credits.exceptions import (
    DailyLimitReached,
    InsufficientBalance,
    LedgerKeyConflict,
    RequestIdConflict,
    StaleContext,
    TokenRevoked,
)
from credits.models import CreditAccount, LedgerEntry, SpendCounter, UsageRecord

logger = logging.getLogger(__name__)

Source = LedgerEntry.Source


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
    """Add (or, for adjustments, remove) money once per (source, key); never below zero.
    Returns (entry, created); a repeat of the same operation (same kind and amount) returns the
    first entry and moves nothing; a different operation under the key raises."""
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
            updated = CreditAccount.objects.filter(pk=account_id, balance__gte=-amount).update(
                balance=F("balance") + amount
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
    entry_id: int
    cost: int
    balance: int
    created: bool
    # What the follow-ups need, read by the debit's own UPDATE (only for a new debit).
    topup_due: bool = False
    alert_due: bool = False


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


_DEBIT_CALL = "SELECT * FROM credits_usage_debit(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"  # noqa: E501
DAILY_LIMIT_SQLSTATE = "KBDL1"


def usage_debit(
    *,
    account_id: int,
    user_id: int,
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
    token_id: int | None = None,
    organization_id: UUID | None = None,
    versions: tuple[int, int] | None = None,
) -> Debit:
    """Debit `cost` once per request_id (the `usage` namespace), never below zero, within the
    member's daily limit, in one statement: `credits_usage_debit` (migration 0006) checks the
    token and the caller's context `versions` when given, answers a retry with the first entry,
    runs the balance's conditional UPDATE, the limit's conditional upsert and the inserts, and
    returns what the answer and the follow-ups need. `at` back-dates the records (imports and
    demo history only). Raises InsufficientBalance, DailyLimitReached, RequestIdConflict,
    StaleContext or TokenRevoked."""
    params: list[Any] = [
        account_id,
        user_id,
        token_id,
        organization_id,
        list(versions) if versions is not None else None,
        request_id,
        cost,
        provider,
        model,
        project,
        input_tokens,
        output_tokens,
        cache_read_tokens,
        cache_write_tokens,
        timezone.now(),
        at,
    ]
    for attempt in (1, 2):
        try:
            row = _debit_call(params)
        except IntegrityError:
            # A racing retry of this request_id committed first (the unique key): ask again,
            # the answer is then the first result.
            if attempt == 2:
                raise
            continue
        except DatabaseError as error:
            if getattr(error.__cause__, "sqlstate", None) == DAILY_LIMIT_SQLSTATE:
                raise DailyLimitReached from None
            raise
        break
    outcome, entry_id, balance, charged, topup_due, alert_due = row
    if outcome in ("new", "duplicate"):
        return Debit(
            entry_id=entry_id,
            cost=charged,
            balance=balance,
            created=outcome == "new",
            topup_due=topup_due,
            alert_due=alert_due,
        )
    raise {
        "insufficient": InsufficientBalance(),
        "conflict": RequestIdConflict(request_id=request_id),
        "stale": StaleContext(),
        "unauthorized": TokenRevoked(),
    }[outcome]


def _debit_call(params: list[Any]) -> tuple[Any, ...]:
    """One round trip in autocommit mode; inside a caller's transaction (tests, imports), in a
    savepoint, so that a failed call does not abort the caller's transaction."""
    if connection.in_atomic_block:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_DEBIT_CALL, params)
            return tuple(cursor.fetchone())
    with connection.cursor() as cursor:
        cursor.execute(_DEBIT_CALL, params)
        return tuple(cursor.fetchone())
