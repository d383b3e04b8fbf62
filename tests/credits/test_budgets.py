"""Monthly budgets per member and monthly caps per token: enforced inside the debit or hold, under
any concurrency, shown to the member and to owners."""

import threading
from datetime import UTC, datetime

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.urls import reverse

from credits.exceptions import MemberBudgetExceeded
from credits.models import CreditAccount, MemberBudget
from credits.services import account_for, api_token_create, member_budget_set
from tests.conftest import World, client_for
from tests.credits.conftest import fund, seat_everyone, spend_exactly
from tests.credits.test_api import SONNET_COST, api, spend
from tests.credits.test_holds import HOLD_AMOUNT, hold

DOLLAR = 1_000_000


@pytest.fixture
def funded(world: World) -> World:
    seat_everyone(world.org, world.owner)
    fund(account_for(organization=world.org), 10 * DOLLAR)
    return world


def budget(world: World, dollars: str) -> None:
    response = client_for(world.owner).post(
        reverse("org_member_budgets", args=[world.org.pk]),
        {"user_id": world.member.pk, "budget": dollars},
    )
    assert response.status_code == 302, response.content.decode()[:500]


def test_a_member_over_the_monthly_budget_gets_402(funded: World) -> None:
    budget(funded, "0.02")  # room for 3 requests of $0.006
    assert MemberBudget.objects.get(user=funded.member).monthly_limit == 20_000
    member = api(funded.member, funded.org)
    assert [spend(member, f"b-{n}").status_code for n in range(4)] == [201, 201, 201, 402]
    response = spend(member, "b-4")
    assert (response.status_code, response.json()["error"]) == (402, "member_budget_exceeded")
    # A hold counts against it too, and others in the organization are not limited by it.
    assert hold(member, "over").json()["error"] == "member_budget_exceeded"
    assert spend(api(funded.owner, funded.org), "owner-1").status_code == 201


def test_a_budget_set_mid_month_counts_what_was_spent(funded: World) -> None:
    account = account_for(organization=funded.org)
    with time_machine.travel(datetime(2027, 2, 10, 12, tzinfo=UTC), tick=False):
        spend_exactly(account, funded.member, 900_000, "earlier")
        member_budget_set(
            actor=funded.owner, account=account, user=funded.member, monthly_limit=DOLLAR
        )
        with pytest.raises(MemberBudgetExceeded):
            spend_exactly(account, funded.member, 100_001, "over")
        spend_exactly(account, funded.member, 100_000, "exactly")
    with time_machine.travel(datetime(2027, 3, 1, 0, 0, 1, tzinfo=UTC), tick=False):
        spend_exactly(account, funded.member, DOLLAR, "a-new-month")


@pytest.mark.django_db(transaction=True)
def test_32_parallel_requests_never_pass_the_budget(world: World) -> None:
    seat_everyone(world.org, world.owner)
    account = account_for(organization=world.org)
    fund(account, 10 * DOLLAR)
    member_budget_set(
        actor=world.owner, account=account, user=world.member, monthly_limit=5 * SONNET_COST
    )
    _, raw = api_token_create(user=world.member, name="burst")
    headers = {"Authorization": f"Bearer {raw}", "X-KiloCode-OrganizationId": str(world.org.pk)}
    statuses: list[int] = []
    barrier = threading.Barrier(32)

    def one(n: int) -> None:
        try:
            barrier.wait()
            statuses.append(spend(Client(headers=headers), f"burst-{n}").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=one, args=(n,)) for n in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201] * 5 + [402] * 27
    assert CreditAccount.objects.get(pk=account.pk).balance == 10 * DOLLAR - 5 * SONNET_COST


def test_a_tokens_monthly_cap_works_the_same_way(funded: World) -> None:
    _, raw = api_token_create(user=funded.member, name="ci", monthly_cap=3 * SONNET_COST)
    capped = Client(
        headers={"Authorization": f"Bearer {raw}", "X-KiloCode-OrganizationId": str(funded.org.pk)}
    )
    statuses = [spend(capped, f"cap-{n}").status_code for n in range(4)]
    assert statuses == [201, 201, 201, 402]
    assert spend(capped, "cap-x").json()["error"] == "token_budget_exceeded"
    # The cap counts over every profile: personal spending uses it up too.
    personal = Client(headers={"Authorization": f"Bearer {raw}"})
    fund(account_for(user=funded.member), DOLLAR, key="personal")
    assert spend(personal, "personal-1").json()["error"] == "token_budget_exceeded"
    # Another token of the same member is not capped.
    assert spend(api(funded.member, funded.org), "other-token").status_code == 201
    # A hold reserves against the cap and a release gives it back.
    _, raw2 = api_token_create(user=funded.member, name="ci2", monthly_cap=HOLD_AMOUNT)
    streaming = Client(
        headers={"Authorization": f"Bearer {raw2}", "X-KiloCode-OrganizationId": str(funded.org.pk)}
    )
    held = hold(streaming, "s-1").json()
    assert hold(streaming, "s-2").json()["error"] == "token_budget_exceeded"
    streaming.post(f"/api/holds/{held['hold_id']}/release")
    assert hold(streaming, "s-3").status_code == 201


def test_the_budgets_page_shows_who_is_near_and_follows_the_matrix(funded: World) -> None:
    url = reverse("org_member_budgets", args=[funded.org.pk])
    assert client_for(funded.admin).get(url).status_code == 200
    assert client_for(funded.billing).get(url).status_code == 403
    assert client_for(funded.member).get(url).status_code == 403
    assert client_for(funded.outsider).get(url).status_code == 404
    budget(funded, "0.01")
    account = account_for(organization=funded.org)
    spend_exactly(account, funded.member, 9_000, "near")
    page = client_for(funded.owner).get(url).content.decode()
    assert "near the budget" in page
    # Whoever has no budget is not counted here: the row sends to their usage this month.
    usage = reverse("org_usage", args=[funded.org.pk])
    assert f'{usage}?period=month&amp;member={funded.owner.pk}">see Usage</a>' in page
    assert f"member={funded.member.pk}" not in page
    response = client_for(funded.owner).get(f"{usage}?period=month&member={funded.owner.pk}")
    assert response.status_code == 200
    overview = client_for(funded.owner).get(reverse("org_overview", args=[funded.org.pk]))
    assert "Near their monthly budget" in overview.content.decode()
    mine = client_for(funded.member).get(reverse("org_overview", args=[funded.org.pk]))
    assert "$0.01 of $0.01" in mine.content.decode()  # $0.009 shown to the cent
    # Absurd budgets are refused with a message; a stranger's user id changes nothing.
    for raw in ("1e309", "-5", "lots"):
        response = client_for(funded.owner).post(url, {"user_id": funded.member.pk, "budget": raw})
        assert response.status_code == 400
    response = client_for(funded.owner).post(url, {"user_id": funded.outsider.pk, "budget": "5"})
    assert response.status_code == 400
    assert not MemberBudget.objects.filter(user=funded.outsider).exists()
    # Setting one follows the matrix too: billing managers and members 403, outsiders 404.
    before = list(MemberBudget.objects.values_list("user_id", "monthly_limit"))
    for person, status in ((funded.billing, 403), (funded.member, 403), (funded.outsider, 404)):
        attack = client_for(person).post(url, {"user_id": funded.member.pk, "budget": "999"})
        assert attack.status_code == status
    assert list(MemberBudget.objects.values_list("user_id", "monthly_limit")) == before
