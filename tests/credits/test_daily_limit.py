"""The member daily limit is enforced inside the debit's transaction, by a conditional update of
the member's spend of the day: no burst of parallel requests gets past it."""

import threading
from datetime import UTC, datetime

import pytest
import time_machine
from django.db import connection

from credits.exceptions import DailyLimitReached
from credits.models import CreditAccount, LedgerEntry, SpendCounter
from credits.services import account_for, member_daily_limit_set
from tests.credits.conftest import fund, spend_exactly
from tests.factories import MembershipFactory, OrganizationFactory

DOLLAR = 1_000_000
CENT = 10_000


@pytest.mark.django_db(transaction=True)
def test_32_parallel_requests_never_exceed_the_daily_limit() -> None:
    """The issue's case: a $0.10 limit let three requests of $0.069 through in parallel."""
    organization = OrganizationFactory()
    member = MembershipFactory(organization=organization, role="member").user
    other = MembershipFactory(organization=organization, role="member").user
    account = account_for(organization=organization)
    fund(account, 10 * DOLLAR)
    member_daily_limit_set(actor=member, account=account, limit=10 * CENT)
    account.refresh_from_db()
    accepted: list[int] = []
    refused: list[int] = []
    barrier = threading.Barrier(32)

    def request(n: int) -> None:
        try:
            barrier.wait()
            try:
                spend_exactly(account, member, 69_000, f"burst-{n}")
                accepted.append(n)
            except DailyLimitReached:
                refused.append(n)
        finally:
            connection.close()

    threads = [threading.Thread(target=request, args=(n,)) for n in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (len(accepted), len(refused)) == (1, 31)
    account.refresh_from_db()
    assert account.balance == 10 * DOLLAR - 69_000
    assert LedgerEntry.objects.filter(account=account, kind="usage").count() == 1
    assert SpendCounter.objects.get(account=account, subject_id=member.pk).spent == 69_000
    # The limit is per member: someone else still has their own $0.10.
    spend_exactly(account, other, 69_000, "other-1")


def test_a_limit_set_mid_day_counts_what_was_spent_today(db: None) -> None:
    organization = OrganizationFactory()
    member = MembershipFactory(organization=organization, role="member").user
    account = account_for(organization=organization)
    fund(account, DOLLAR)
    with time_machine.travel(datetime(2027, 1, 5, 9, tzinfo=UTC), tick=False):
        spend_exactly(account, member, 8 * CENT, "before-the-limit")
        member_daily_limit_set(actor=member, account=account, limit=10 * CENT)
        account.refresh_from_db()
        with pytest.raises(DailyLimitReached):
            spend_exactly(account, member, 3 * CENT, "over")
        spend_exactly(account, member, 2 * CENT, "exactly-at-the-limit")
        with pytest.raises(DailyLimitReached):
            spend_exactly(account, member, 1, "one-microdollar-over")
    with time_machine.travel(datetime(2027, 1, 6, 0, 0, 1, tzinfo=UTC), tick=False):
        spend_exactly(account, member, 10 * CENT, "a-new-day")
        with pytest.raises(DailyLimitReached):
            spend_exactly(account, member, 1, "over-again")
    account.refresh_from_db()
    assert account.balance == DOLLAR - 20 * CENT


def test_a_single_request_above_the_limit_is_refused_and_removing_it_lifts_it(db: None) -> None:
    organization = OrganizationFactory()
    member = MembershipFactory(organization=organization, role="member").user
    account = account_for(organization=organization)
    fund(account, DOLLAR)
    member_daily_limit_set(actor=member, account=account, limit=5 * CENT)
    account.refresh_from_db()
    with pytest.raises(DailyLimitReached):
        spend_exactly(account, member, 6 * CENT, "too-big")
    assert not SpendCounter.objects.exists()
    member_daily_limit_set(actor=member, account=account, limit=None)
    account.refresh_from_db()
    spend_exactly(account, member, 6 * CENT, "no-limit-now")
    assert CreditAccount.objects.get(pk=account.pk).balance == DOLLAR - 6 * CENT
