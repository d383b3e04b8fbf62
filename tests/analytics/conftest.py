"""Usage is made the only way the product makes it, through `credits.services.usage_debit`
(which counts it in the rollups), back-dated with `at=`; the clock stands still at NOW."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
import time_machine

from accounts.models import User
from credits.ledger import Debit, usage_debit
from credits.models import CreditAccount
from credits.services import account_for
from tests.conftest import World
from tests.credits.conftest import fund

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
TODAY = NOW.date()
_keys = count(1)


@pytest.fixture(autouse=True)
def _frozen_clock() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


def spend(
    account: CreditAccount,
    user: User,
    *,
    cost: int,
    days_ago: int = 0,
    model: str = "claude-sonnet-4-5",
    provider: str = "anthropic",
    project: str = "",
    input_tokens: int = 1000,
    output_tokens: int = 100,
    at: datetime | None = None,
) -> Debit:
    return usage_debit(
        account_id=account.pk,
        user_id=user.pk,
        cost=cost,
        request_id=f"t-{next(_keys)}",
        provider=provider,
        model=model,
        project=project,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        at=at or NOW - timedelta(days=days_ago, hours=1),
    )


@pytest.fixture
def acme(world: World) -> CreditAccount:
    account = account_for(organization=world.org)
    fund(account, 10**12)
    return account


@pytest.fixture
def globex(world: World) -> CreditAccount:
    account = account_for(organization=world.neighbour)
    fund(account, 10**12, key="fund-globex")
    return account
