"""Row locks taken while a person waits (an invitation, an acceptance, a role change, a seat
removal, "pay now") wait a bounded time for another transaction to let go, then the person is
told to try again, rather than waiting behind it without limit. No gateway call happens under a
row lock, so a holder lets go within milliseconds; the bound is for everything else."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.db import OperationalError, connection

from organizations.exceptions import RowBusy

REQUEST_LOCK_WAIT = timedelta(seconds=5)
# PostgreSQL's SQLSTATE for lock_timeout (and NOWAIT) giving up: lock_not_available.
LOCK_NOT_AVAILABLE = "55P03"


def lock_not_available(error: BaseException) -> bool:
    """Whether a database error is a lock wait that gave up."""
    return getattr(error.__cause__, "sqlstate", None) == LOCK_NOT_AVAILABLE


@contextmanager
def lock_wait_bounded(
    busy: Callable[[], Exception] = RowBusy, *, wait: timedelta | None = None
) -> Iterator[None]:
    """Row locks taken in the block wait at most `wait` (REQUEST_LOCK_WAIT); then `busy()` is
    raised and the caller's transaction rolls back. Only inside a transaction: the setting is
    the transaction's (SET LOCAL), put back after the block."""
    if not connection.in_atomic_block:
        raise RuntimeError("lock_wait_bounded is for row locks, which need a transaction.")
    milliseconds = int((wait or REQUEST_LOCK_WAIT).total_seconds() * 1000)
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('lock_timeout')")
        (previous,) = cursor.fetchone()
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{milliseconds}ms"])
    try:
        yield
    except OperationalError as error:
        if lock_not_available(error):
            raise busy() from error
        raise
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [previous])
