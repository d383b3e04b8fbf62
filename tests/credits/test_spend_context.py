"""The API keeps each token's spend context in the process and the debit checks it: whatever
changes a fact it rests on is refused (or repriced) on the very next request, and a cached
debit costs one database round trip."""

import json
from datetime import date

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from credits.models import ApiToken, CreditAccount, ModelPrice
from credits.services import account_for, api_token_revoke
from dunning.lifecycle import organization_suspend
from organizations.models import Membership
from organizations.services import membership_change_role, membership_remove
from seats.models import SeatSubscription
from tests.conftest import World
from tests.credits.conftest import fund, seat_everyone
from tests.credits.test_api import SONNET_COST, api, spend

DOLLAR = 1_000_000


@pytest.fixture
def spending(world: World) -> World:
    seat_everyone(world.org, world.owner, seats=5)
    fund(account_for(organization=world.org), DOLLAR)
    return world


def balance(world: World) -> int:
    return CreditAccount.objects.get(organization=world.org).balance


def test_a_cached_debit_is_one_round_trip(spending: World) -> None:
    member = api(spending.member, spending.org)
    assert spend(member, "warm-up").status_code == 201
    with CaptureQueriesContext(connection) as queries:
        assert spend(member, "cached").status_code == 201
    # Inside the test's transaction the call sits in a savepoint; in production (autocommit)
    # the one statement is the transaction.
    statements = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(statements) == 1, statements
    assert statements[0].startswith("SELECT * FROM credits_usage_debit(")
    assert balance(spending) == DOLLAR - 2 * SONNET_COST


def test_a_revoked_token_is_refused_on_the_next_request(spending: World) -> None:
    member = api(spending.member, spending.org)
    assert spend(member, "r1").status_code == 201
    token = ApiToken.objects.get(user=spending.member)
    api_token_revoke(user=spending.member, token=token)
    response = spend(member, "r2")
    assert (response.status_code, response.json()["error"]) == (401, "unauthorized")
    assert balance(spending) == DOLLAR - SONNET_COST


def test_a_deactivated_user_is_refused_on_the_next_request(spending: World) -> None:
    member = api(spending.member, spending.org)
    assert spend(member, "r1").status_code == 201
    type(spending.member).objects.filter(pk=spending.member.pk).update(is_active=False)
    assert spend(member, "r2").status_code == 401


def test_a_removed_member_is_refused_on_the_next_request(spending: World) -> None:
    member = api(spending.member, spending.org)
    assert spend(member, "r1").status_code == 201
    membership_remove(
        actor=spending.owner,
        membership=Membership.objects.get(user=spending.owner),
        target=Membership.objects.get(user=spending.member),
    )
    response = spend(member, "r2")
    assert (response.status_code, response.json()["error"]) == (403, "forbidden")
    assert balance(spending) == DOLLAR - SONNET_COST


def test_a_member_made_billing_manager_is_refused_on_the_next_request(spending: World) -> None:
    member = api(spending.member, spending.org)
    assert spend(member, "r1").status_code == 201
    membership_change_role(
        actor=spending.owner,
        membership=Membership.objects.get(user=spending.owner),
        target=Membership.objects.get(user=spending.member),
        role="billing_manager",
    )
    response = spend(member, "r2")
    assert (response.status_code, response.json()["error"]) == (403, "forbidden")


def test_a_lost_seat_is_refused_on_the_next_request(spending: World) -> None:
    """The seats go down to what the gateway says (here two, for the owner and the admin, who
    came first): the member, the newest, has no seat on the next request."""
    member = api(spending.member, spending.org)
    assert spend(member, "r1").status_code == 201
    SeatSubscription.objects.filter(organization=spending.org).update(quantity=2)
    response = spend(member, "r2")
    assert (response.status_code, response.json()["error"]) == (403, "no_seat")
    SeatSubscription.objects.filter(organization=spending.org).update(status="canceled")
    assert spend(api(spending.owner, spending.org), "r3").json()["error"] == "no_seat"
    assert balance(spending) == DOLLAR - SONNET_COST


def test_a_suspended_organization_is_refused_on_the_next_request(spending: World) -> None:
    member = api(spending.member, spending.org)
    assert spend(member, "r1").status_code == 201
    organization_suspend(organization=spending.org, reason="staff", actor=spending.owner)
    response = spend(member, "r2")
    assert (response.status_code, response.json()["error"]) == (402, "organization_suspended")
    assert balance(spending) == DOLLAR - SONNET_COST


def test_a_price_change_reprices_the_next_request(spending: World) -> None:
    member = api(spending.member, spending.org)
    first = spend(member, "r1").json()
    assert first["cost_microdollars"] == SONNET_COST
    price = (
        ModelPrice.objects.filter(provider="anthropic", model_id="claude-sonnet-4")
        .order_by("-effective_from")
        .first()
    )
    assert price is not None
    assert price.effective_from <= date.today()
    ModelPrice.objects.filter(pk=price.pk).update(input_price=price.input_price * 2)
    second = spend(member, "r2").json()
    assert second["cost_microdollars"] == SONNET_COST + 1000 * 3  # 1,000 input tokens, 2× $3/M


def test_a_cached_refusal_is_read_again_so_a_bought_seat_counts_at_once(world: World) -> None:
    fund(account_for(organization=world.org), DOLLAR)
    member = api(world.member, world.org)
    refused = spend(member, "before-seats")
    assert (refused.status_code, refused.json()["error"]) == (403, "no_seat")
    seat_everyone(world.org, world.owner)
    assert spend(member, "after-seats").status_code == 201


def test_a_member_of_another_organization_stays_a_stranger(spending: World) -> None:
    stranger = api(spending.outsider, spending.org)
    response = stranger.post(
        "/api/usage",
        json.dumps(
            {
                "request_id": "x",
                "provider": "anthropic",
                "model": "claude-sonnet-4",
                "input_tokens": 1,
                "output_tokens": 1,
            }
        ),
        content_type="application/json",
    )
    assert (response.status_code, response.json()["error"]) == (403, "forbidden")
    assert balance(spending) == DOLLAR
