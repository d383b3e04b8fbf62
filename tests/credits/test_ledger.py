import threading

import pytest
from django.db import DatabaseError, DataError, connection, transaction
from django.db.models import Sum

from credits import services
from credits.exceptions import InsufficientBalance
from credits.ledger import Debit, usage_debit
from credits.models import CreditAccount, LedgerEntry, UsageRecord
from tests.conftest import World
from tests.credits.conftest import fund
from tests.factories import OrganizationFactory, UserFactory


def debit(account: CreditAccount, user, cost: int, request_id: str) -> Debit:  # type: ignore[no-untyped-def]
    return usage_debit(
        account_id=account.pk,
        user_id=user.pk,
        cost=cost,
        request_id=request_id,
        provider="anthropic",
        model="claude-sonnet-4",
        input_tokens=1000,
        output_tokens=100,
    )


def ledger_sum(account: CreditAccount) -> int:
    return LedgerEntry.objects.filter(account=account).aggregate(total=Sum("amount"))["total"] or 0


def test_a_credit_happens_once_per_key(org_account: CreditAccount) -> None:
    fund(org_account, 5_000_000, key="k1")
    fund(org_account, 5_000_000, key="k1")
    org_account.refresh_from_db()
    assert org_account.balance == 5_000_000 == ledger_sum(org_account)
    assert LedgerEntry.objects.filter(account=org_account).count() == 1


def test_a_debit_never_overdraws(world: World, org_account: CreditAccount) -> None:
    fund(org_account, 1_000)
    with pytest.raises(InsufficientBalance):
        debit(org_account, world.member, 1_001, "r1")
    org_account.refresh_from_db()
    assert org_account.balance == 1_000
    assert not UsageRecord.objects.exists()
    result = debit(org_account, world.member, 1_000, "r2")
    assert (result.balance, result.created) == (0, True)
    assert ledger_sum(org_account) == 0


def test_the_same_request_id_debits_once(world: World, org_account: CreditAccount) -> None:
    fund(org_account, 10_000)
    first = debit(org_account, world.member, 3_000, "same")
    again = debit(org_account, world.member, 3_000, "same")
    assert (again.entry_id, again.created) == (first.entry_id, False)
    org_account.refresh_from_db()
    assert org_account.balance == 7_000


def test_the_ledger_is_append_only(world: World, org_account: CreditAccount) -> None:
    fund(org_account, 10_000)
    entry = LedgerEntry.objects.get(account=org_account)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        LedgerEntry.objects.filter(pk=entry.pk).update(amount=1)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        LedgerEntry.objects.filter(pk=entry.pk).delete()


def test_the_database_refuses_a_negative_balance(org_account: CreditAccount) -> None:
    with pytest.raises(DatabaseError), transaction.atomic():
        CreditAccount.objects.filter(pk=org_account.pk).update(balance=-1)


def test_a_failure_after_the_balance_update_leaves_nothing(
    world: World, org_account: CreditAccount
) -> None:
    """The debit is one statement: the usage row failing after the balance's UPDATE and the
    ledger INSERT (here a project name too long for its column) undoes both."""
    fund(org_account, 10_000)
    with pytest.raises(DataError):
        usage_debit(
            account_id=org_account.pk,
            user_id=world.member.pk,
            cost=4_000,
            request_id="boom",
            provider="anthropic",
            model="claude-sonnet-4",
            input_tokens=1,
            output_tokens=1,
            project="p" * 201,
        )
    org_account.refresh_from_db()
    assert org_account.balance == 10_000
    assert not LedgerEntry.objects.filter(kind="usage").exists()
    assert not UsageRecord.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_spending_stops_exactly_at_zero() -> None:
    organization = OrganizationFactory()
    user = UserFactory()
    account = services.account_for(organization=organization)
    fund(account, 10 * 700 + 500)  # room for exactly 10 debits of 700
    accepted: list[str] = []
    refused: list[str] = []
    barrier = threading.Barrier(8)

    def spend(worker: int) -> None:
        try:
            barrier.wait()
            for n in range(5):
                try:
                    debit(account, user, 700, f"w{worker}-{n}")
                    accepted.append(f"w{worker}-{n}")
                except InsufficientBalance:
                    refused.append(f"w{worker}-{n}")
        finally:
            connection.close()

    threads = [threading.Thread(target=spend, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    account.refresh_from_db()
    assert len(accepted) == 10
    assert len(refused) == 30
    assert account.balance == 500 == ledger_sum(account)


@pytest.mark.django_db(transaction=True)
def test_racing_retries_of_one_request_debit_once() -> None:
    account = services.account_for(organization=OrganizationFactory())
    user = UserFactory()
    fund(account, 100_000)
    results: list[Debit] = []
    barrier = threading.Barrier(6)

    def retry() -> None:
        try:
            barrier.wait()
            results.append(debit(account, user, 1_234, "the-one-request"))
        finally:
            connection.close()

    threads = [threading.Thread(target=retry) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    account.refresh_from_db()
    assert account.balance == 100_000 - 1_234 == ledger_sum(account)
    assert len({result.entry_id for result in results}) == 1
    assert sum(result.created for result in results) == 1
