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
from typing import Any
from uuid import UUID

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F, Sum, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from accounts.models import User
from credits.exceptions import (
    DailyLimitReached,
    HoldEnded,
    HoldNotFound,
    InsufficientBalance,
    LedgerKeyConflict,
    MemberBudgetExceeded,
    RequestIdConflict,
    StaleContext,
    TokenBudgetExceeded,
    TokenRevoked,
)
from credits.models import CreditAccount, Hold, LedgerEntry, SpendCounter, UsageRecord

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
    if amount < 0 and source not in CLAWBACK_SOURCES:
        # Never below what requests in progress hold (balance - held >= 0 after it). Money in is
        # never refused, even while the account owes more than it brings.
        accounts = accounts.filter(balance__gte=F("held") - amount)
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
    entry_id: int
    cost: int
    balance: int
    created: bool
    # What the follow-ups need, read by the debit's own UPDATE (only for a new debit).
    topup_due: bool = False
    alert_due: bool = False


def member_spend_seed(
    *, account_id: int, scope: str, period: date, user_id: int | None = None
) -> None:
    """A limit starts counting from what each member (or the one given) already spent in its
    period: the usage records and the active holds since it began, so that setting a limit or a
    budget mid-period hands out no fresh allowance."""
    start = datetime.combine(period, time.min, tzinfo=UTC)
    people = {} if user_id is None else {"user_id": user_id}
    spent: dict[int, int] = {}
    for rows in (
        UsageRecord.objects.filter(
            account_id=account_id, created_at__gte=start, user__isnull=False, **people
        )
        .values("user_id")
        .annotate(total=Sum("cost")),
        Hold.objects.filter(
            account_id=account_id,
            created_at__gte=start,
            status=Hold.Status.ACTIVE,
            user__isnull=False,
            **people,
        )
        .values("user_id")
        .annotate(total=Sum("amount")),
    ):
        for row in rows:
            spent[row["user_id"]] = spent.get(row["user_id"], 0) + row["total"]
    for subject_id, total in spent.items():
        SpendCounter.objects.update_or_create(
            account_id=account_id,
            scope=scope,
            subject_id=subject_id,
            period=period,
            defaults={"spent": total},
        )


def _statement(function: str, arguments: int, casts: dict[int, str] | None = None) -> str:
    """`SELECT * FROM function(%s, …)`, with a type where psycopg's guess could differ from
    the function's (a list of small ints goes out as int2[])."""
    casts = casts or {}
    placeholders = ", ".join(
        f"%s::{casts[index]}" if index in casts else "%s" for index in range(arguments)
    )
    return f"SELECT * FROM {function}({placeholders})"  # noqa: S608 - our own names


_VERSIONS = {4: "bigint[]"}  # the caller's context versions, 5th argument
_USAGE_DEBIT = _statement("credits_usage_debit", 17, _VERSIONS)
_HOLD_CREATE = _statement("credits_hold_create", 17, _VERSIONS)
_HOLD_SETTLE = _statement("credits_hold_settle", 10)
_HOLD_RELEASE = _statement("credits_hold_release", 5)
_HOLDS_EXPIRE = "SELECT credits_holds_expire(%s, %s)"
# The SQLSTATEs the functions raise when a limit refuses (migration 0009).
_LIMITS = {
    "KBDL1": DailyLimitReached,
    "KBMB1": MemberBudgetExceeded,
    "KBTB1": TokenBudgetExceeded,
}


def _call(statement: str, params: list[Any]) -> tuple[Any, ...]:
    """One of the ledger's functions, in one round trip in autocommit mode (inside a caller's
    transaction, in a savepoint: a failed call must not abort it). A racing retry of the same
    key makes the function fail on the unique key after the first commits: it is asked again
    once, and then answers with the first result. A limit that refuses is its exception."""
    for attempt in (1, 2):
        try:
            if connection.in_atomic_block:
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute(statement, params)
                    return tuple(cursor.fetchone())
            with connection.cursor() as cursor:
                cursor.execute(statement, params)
                return tuple(cursor.fetchone())
        except IntegrityError:
            if attempt == 2:
                raise
        except DatabaseError as error:
            refusal = _LIMITS.get(getattr(error.__cause__, "sqlstate", None) or "")
            if refusal is not None:
                raise refusal from None
            raise
    raise AssertionError("unreachable")


def _refused(outcome: str, *, request_id: str = "") -> Exception:
    return {
        "insufficient": InsufficientBalance(),
        "conflict": RequestIdConflict(request_id=request_id),
        "stale": StaleContext(),
        "unauthorized": TokenRevoked(),
        "not_found": HoldNotFound(),
        "expired": HoldEnded("expired"),
        "released": HoldEnded("released"),
        "settled": HoldEnded("settled"),
    }[outcome]


@dataclass(frozen=True)
class Caller:
    """Who spends, as the API checked it: the token and the context versions the functions
    verify (None for the product's own calls: demo history, imports, tests)."""

    token_id: int | None = None
    organization_id: UUID | None = None
    versions: tuple[int, int] | None = None

    @property
    def params(self) -> list[Any]:
        return [
            self.token_id,
            self.organization_id,
            list(self.versions) if self.versions is not None else None,
        ]


NOBODY = Caller()


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
    price_id: int | None = None,
    caller: Caller = NOBODY,
) -> Debit:
    """Debit `cost` once per request_id (the `usage` namespace) from what is available (the
    balance less the holds), within the member's daily limit and monthly budget and the token's
    monthly cap, in one statement: `credits_usage_debit` (migration 0009). It checks the caller's
    token and context when given, answers a retry with the first entry, runs the conditional
    UPDATE, the limits' conditional upserts and the inserts, and returns what the answer and the
    follow-ups need. `at` back-dates the records (imports and demo history only). Raises
    InsufficientBalance, a limit's exception, RequestIdConflict, StaleContext or TokenRevoked."""
    outcome, entry_id, balance, charged, topup_due, alert_due = _call(
        _USAGE_DEBIT,
        [
            account_id,
            user_id,
            *caller.params,
            request_id,
            cost,
            price_id,
            provider,
            model,
            project,
            input_tokens,
            output_tokens,
            cache_read_tokens,
            cache_write_tokens,
            timezone.now(),
            at,
        ],
    )
    if outcome not in ("new", "duplicate"):
        raise _refused(outcome, request_id=request_id)
    return Debit(
        entry_id=entry_id,
        cost=charged,
        balance=balance,
        created=outcome == "new",
        topup_due=topup_due,
        alert_due=alert_due,
    )


@dataclass(frozen=True)
class HoldPlaced:
    hold_id: int
    amount: int
    available: int
    expires_at: datetime
    created: bool


def hold_place(
    *,
    account_id: int,
    user_id: int,
    amount: int,
    request_id: str,
    provider: str,
    model: str,
    max_input_tokens: int,
    max_output_tokens: int,
    max_cache_read_tokens: int,
    max_cache_write_tokens: int,
    price_id: int,
    expires_at: datetime,
    project: str = "",
    caller: Caller = NOBODY,
) -> HoldPlaced:
    """Reserve `amount` of what is available once per request_id (the hold's key), within the
    same limits as a debit (`credits_hold_create`)."""
    outcome, hold_id, held, available, until = _call(
        _HOLD_CREATE,
        [
            account_id,
            user_id,
            *caller.params,
            request_id,
            amount,
            price_id,
            provider,
            model,
            project,
            max_input_tokens,
            max_output_tokens,
            max_cache_read_tokens,
            max_cache_write_tokens,
            timezone.now(),
            expires_at,
        ],
    )
    if outcome not in ("new", "duplicate"):
        raise _refused(outcome, request_id=request_id)
    return HoldPlaced(
        hold_id=hold_id,
        amount=held,
        available=available,
        expires_at=until,
        created=outcome == "new",
    )


@dataclass(frozen=True)
class Settlement:
    entry_id: int
    cost: int
    balance: int
    released: int
    uncollected: int
    created: bool
    topup_due: bool = False
    alert_due: bool = False


def hold_settle(
    *,
    hold_id: int,
    account_id: int,
    user_id: int,
    cost: int,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
    caller: Caller = NOBODY,
) -> Settlement:
    """Debit a hold's actual cost once and free the rest (`credits_hold_settle`); settling
    again answers the first settlement. Raises HoldNotFound, HoldEnded (released or expired),
    RequestIdConflict (settled before with other token counts) or TokenRevoked."""
    outcome, entry_id, balance, charged, released, uncollected, topup_due, alert_due = _call(
        _HOLD_SETTLE,
        [
            hold_id,
            account_id,
            user_id,
            caller.token_id,
            cost,
            input_tokens,
            output_tokens,
            cache_read_tokens,
            cache_write_tokens,
            timezone.now(),
        ],
    )
    if outcome not in ("new", "duplicate"):
        raise _refused(outcome, request_id=f"hold {hold_id}")
    return Settlement(
        entry_id=entry_id,
        cost=charged,
        balance=balance,
        released=released,
        uncollected=uncollected,
        created=outcome == "new",
        topup_due=bool(topup_due),
        alert_due=bool(alert_due),
    )


@dataclass(frozen=True)
class Release:
    released: int
    available: int
    created: bool


def hold_release(
    *, hold_id: int, account_id: int, user_id: int, caller: Caller = NOBODY
) -> Release:
    """Free a hold without debiting (`credits_hold_release`); releasing again answers the same.
    Raises HoldNotFound, HoldEnded("settled") or TokenRevoked."""
    outcome, released, available = _call(
        _HOLD_RELEASE, [hold_id, account_id, user_id, caller.token_id, timezone.now()]
    )
    if outcome in ("not_found", "settled", "unauthorized"):
        raise _refused(outcome)
    return Release(released=released or 0, available=available, created=outcome == "released")


def hold_free(*, hold_id: int) -> int | None:
    """Free one active hold whoever asks (closing an organization); the amount freed, or None
    when it was no longer active."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT credits_hold_free(%s, 'released', %s)", [hold_id, timezone.now()])
        freed = cursor.fetchone()[0]
    return int(freed) if freed is not None else None


def holds_expire(*, limit: int = 1000) -> int:
    """Free the holds past their expiry (nothing is debited); how many."""
    with connection.cursor() as cursor:
        cursor.execute(_HOLDS_EXPIRE, [timezone.now(), limit])
        return int(cursor.fetchone()[0])
