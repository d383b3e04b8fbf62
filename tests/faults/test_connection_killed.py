"""A database connection killed (pg_terminate_backend from another connection) while a debit or
a purchase holds its transaction open, right after the balance UPDATE: PostgreSQL rolls the
transaction back, so there is no partial ledger row and no balance drift, and a retry (the
client's, or the provider's webhook for a purchase) moves the money exactly once."""

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connection, connections
from django.db.models import Sum
from django.test import Client

from credits.models import CreditAccount, LedgerEntry, Purchase, UsageRecord
from credits.services import account_for, api_token_create, credits_purchase
from payments.sandbox import delivery
from tests.conftest import World, settle
from tests.credits.conftest import fund, seat_everyone

TIMEOUT = 30  # seconds any one step may take before the test gives up
BALANCE_UPDATE = {
    "credit": 'UPDATE "credits_creditaccount" SET "balance" = ',  # ledger_credit's ORM update
}


class Paused:
    """Pauses the thread that runs `work` right after it sends a balance UPDATE, tells which
    database backend it runs on, and lets it go on when told."""

    def __init__(self, statement: str) -> None:
        self.statement = statement
        self.backend_pid: int | None = None
        self.reached = threading.Event()
        self.resume = threading.Event()
        self.error: BaseException | None = None
        self.result: Any = None

    def _wrapper(self, execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        result = execute(sql, *args)
        if " ".join(sql.split()).startswith(self.statement) and not self.reached.is_set():
            self.reached.set()
            assert self.resume.wait(TIMEOUT), "nobody resumed the paused transaction"
        return result

    def run(self, work: Callable[[], Any]) -> threading.Thread:
        def target() -> None:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_backend_pid()")
                    self.backend_pid = cursor.fetchone()[0]
                with connection.execute_wrapper(self._wrapper):
                    self.result = work()
            except BaseException as error:
                self.error = error
            finally:
                self.reached.set()
                connection.close()

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        return thread


@contextmanager
def killed_midway(statement: str, work: Callable[[], Any]) -> Iterator[Paused]:
    """Run `work` in a thread, kill its database connection once its balance UPDATE is sent,
    then let it go on (into the dead connection) and wait for it to finish."""
    paused = Paused(statement)
    thread = paused.run(work)
    assert paused.reached.wait(TIMEOUT), "the work never reached its balance UPDATE"
    assert paused.backend_pid is not None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [paused.backend_pid])
        assert cursor.fetchone()[0] is True
    paused.resume.set()
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    yield paused


def assert_whole(account: CreditAccount) -> int:
    """balance == sum(ledger), one usage record per usage entry; returns the balance."""
    account.refresh_from_db()
    total = LedgerEntry.objects.filter(account=account).aggregate(total=Sum("amount"))["total"]
    assert account.balance == (total or 0)
    usage_entries = LedgerEntry.objects.filter(account=account, kind=LedgerEntry.Kind.USAGE)
    assert UsageRecord.objects.filter(account=account).count() == usage_entries.count()
    return account.balance


@pytest.mark.django_db(transaction=True)
def test_it_leaves_no_trace_of_a_debit_whose_connection_died(world: World) -> None:
    """The debit is one statement (credits_usage_debit). Its connection is killed while the
    statement waits inside the database for the account's row lock (held here by another
    transaction): nothing of it stays, and the client's retry debits once."""
    seat_everyone(world.org, world.owner)
    account = account_for(organization=world.org)
    fund(account, 1_000_000)
    _, token = api_token_create(user=world.member, name="extension")
    headers = {"Authorization": f"Bearer {token}", "X-KiloCode-OrganizationId": str(world.org.pk)}
    body = json.dumps(
        {
            "request_id": "req-killed",
            "provider": "anthropic",
            "model": "claude-sonnet-4",
            "input_tokens": 1000,
            "output_tokens": 100,
        }
    )

    def spend() -> Any:
        client = Client(headers=headers, raise_request_exception=False)
        return client.post("/api/usage", body, content_type="application/json")

    outcome: dict[str, Any] = {}

    def debit_in_a_thread() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                outcome["pid"] = cursor.fetchone()[0]
            outcome["response"] = spend()
        finally:
            connection.close()

    holder = connections.create_connection("default")  # its own, to hold the row lock
    with holder.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute(
            "SELECT id FROM credits_creditaccount WHERE id = %s FOR UPDATE", [account.pk]
        )
        thread = threading.Thread(target=debit_in_a_thread, daemon=True)
        thread.start()
        waiting = _wait_for_lock_wait(cursor, outcome)
        assert waiting, "the debit never waited for the account's row lock"
        cursor.execute("SELECT pg_terminate_backend(%s)", [outcome["pid"]])
        thread.join(TIMEOUT)
        cursor.execute("ROLLBACK")
    holder.close()
    assert not thread.is_alive()
    assert outcome["response"].status_code == 500
    assert assert_whole(account) == 1_000_000
    assert not LedgerEntry.objects.filter(idempotency_key="req-killed").exists()
    assert not UsageRecord.objects.filter(request_id="req-killed").exists()

    # The extension retries the same request: debited once.
    retried = spend()
    assert retried.status_code == 201
    cost = retried.json()["cost_microdollars"]
    assert assert_whole(account) == 1_000_000 - cost
    assert spend().status_code == 200  # and once only
    assert assert_whole(account) == 1_000_000 - cost
    assert LedgerEntry.objects.filter(idempotency_key="req-killed").count() == 1


def _wait_for_lock_wait(cursor: Any, outcome: dict[str, Any]) -> bool:
    for _ in range(TIMEOUT * 20):
        pid = outcome.get("pid")
        if pid is not None:
            cursor.execute(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", [pid]
            )
            row = cursor.fetchone()
            if row and row[0]:
                return True
        time.sleep(0.05)
    return False


@pytest.mark.django_db(transaction=True)
def test_it_credits_a_purchase_once_when_its_connection_died(world: World) -> None:
    """The card is charged at the provider, then the connection dies while the credits are being
    added: nothing is added; the provider's invoice.paid webhook adds them, once."""
    seat_everyone(world.org, world.owner)
    settle()
    account = account_for(organization=world.org)

    def buy() -> Any:
        return credits_purchase(
            actor=world.owner,
            account=account,
            amount_cents=10_000,
            idempotency_key="buy-killed",
            success_url="http://testserver/",
            cancel_url="http://testserver/",
        )

    # As with Stripe, the provider's events arrive after its synchronous answer: the sandbox's
    # first deliveries fail here, and settle() delivers them again below (through the test
    # client of tests/conftest.py, which this context puts back).
    with pytest.MonkeyPatch.context() as later:
        later.setattr(delivery, "post", lambda url, body, headers: (503, "not yet"))
        with killed_midway(BALANCE_UPDATE["credit"], buy) as paused:
            pass
    assert paused.error is not None  # the buyer sees an error page
    purchase = Purchase.objects.get(idempotency_key="buy-killed")
    assert purchase.status == Purchase.Status.PENDING
    assert purchase.gateway_invoice_id  # the charge happened at the provider
    assert assert_whole(account) == 0
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.PURCHASE).exists()

    settle()  # the provider's events arrive: invoice.paid credits the purchase

    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.PAID
    assert assert_whole(account) == 100_000_000
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.PURCHASE).count() == 1
    # The buyer confirms again (same idempotency key): nothing more is charged or credited.
    assert buy().purchase.pk == purchase.pk
    settle()
    assert assert_whole(account) == 100_000_000
