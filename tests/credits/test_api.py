import json
from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from credits.models import ApiToken, CreditAccount, LedgerEntry, UsageRecord
from credits.services import account_for, api_token_create
from organizations.models import Membership, Organization
from tests.conftest import World
from tests.credits.conftest import fund, seat_everyone
from tests.factories import UserFactory

SONNET = {
    "provider": "anthropic",
    "model": "claude-sonnet-4",
    "input_tokens": 1000,
    "output_tokens": 200,
}
SONNET_COST = 1000 * 3 + 200 * 15  # microdollars


def api(user, org=None):  # type: ignore[no-untyped-def]
    _, raw = api_token_create(user=user, name="test")
    headers = {"Authorization": f"Bearer {raw}"}
    if org is not None:
        headers["X-KiloCode-OrganizationId"] = str(org.pk)
    return Client(headers=headers)


def spend(client: Client, request_id: str = "req-1", **body: object):  # type: ignore[no-untyped-def]
    return client.post(
        "/api/usage",
        json.dumps({"request_id": request_id, **SONNET, **body}),
        content_type="application/json",
    )


@pytest.fixture
def funded(world: World) -> World:
    seat_everyone(world.org, world.owner)
    fund(account_for(organization=world.org), 1_000_000)
    return world


def test_a_member_without_a_seat_cannot_spend(world: World) -> None:
    fund(account_for(organization=world.org), 1_000_000)
    response = spend(api(world.member, world.org))
    assert (response.status_code, response.json()["error"]) == (403, "no_seat")
    assert account_for(organization=world.org).balance == 1_000_000


def test_the_profile_lists_the_callers_organizations(world: World) -> None:
    body = api(world.member).get("/api/profile").json()
    assert body["user"]["email"] == world.member.email
    assert body["organizations"] == [
        {"id": str(world.org.pk), "name": "Acme Robotics", "role": "member", "status": "active"}
    ]


def test_the_balance_follows_the_header(funded: World) -> None:
    fund(account_for(user=funded.member), 2_500_000)
    assert api(funded.member).get("/api/profile/balance").json() == {
        "balance": 2.5,
        "balance_microdollars": 2_500_000,
        "isDepleted": False,
        "status": "active",
        "held_microdollars": 0,
        "available_microdollars": 2_500_000,
    }
    org_balance = api(funded.member, funded.org).get("/api/profile/balance").json()
    assert org_balance["balance_microdollars"] == 1_000_000
    assert org_balance["status"] == "active"


@pytest.mark.parametrize(
    ("state", "status"),
    [("grace", "grace"), ("suspended", "suspended"), ("active", "active")],
)
def test_the_api_tells_each_organizations_status(funded: World, state: str, status: str) -> None:
    """What an extension reads before a request fails: the chosen profile's status on the
    balance and each organization's on the profile; the personal profile is always active."""
    fund(account_for(user=funded.member), 1_000_000)
    now = timezone.now()
    Organization.objects.filter(pk=funded.org.pk).update(
        billing_state=state,
        grace_ends_at=now + timedelta(days=3) if state == "grace" else None,
        suspended_at=now if state == "suspended" else None,
    )
    member = api(funded.member, funded.org)
    assert member.get("/api/profile/balance").json()["status"] == status
    organizations = api(funded.member).get("/api/profile").json()["organizations"]
    assert [(org["id"], org["status"]) for org in organizations] == [(str(funded.org.pk), status)]
    assert api(funded.member).get("/api/profile/balance").json()["status"] == "active"
    # The neighbour's state is never the member's business, nor theirs ours.
    outsider = api(funded.outsider).get("/api/profile").json()["organizations"]
    assert [org["status"] for org in outsider] == ["active"]


def test_a_member_spends_the_organizations_credits_once_per_request(funded: World) -> None:
    client = api(funded.member, funded.org)
    first = spend(client)
    assert first.status_code == 201
    body = first.json()
    assert body["cost_microdollars"] == SONNET_COST
    assert body["balance_microdollars"] == 1_000_000 - SONNET_COST
    again = spend(client)
    assert (again.status_code, again.json()) == (200, body)
    account = account_for(organization=funded.org)
    assert account.balance == 1_000_000 - SONNET_COST
    usage = UsageRecord.objects.get()
    assert (usage.user, usage.model, usage.cost) == (funded.member, "claude-sonnet-4", SONNET_COST)


def test_an_empty_balance_is_402_with_the_way_to_buy(world: World) -> None:
    seat_everyone(world.org, world.owner)
    response = spend(api(world.member, world.org))
    assert response.status_code == 402
    body = response.json()
    assert body["error"] == "insufficient_balance"
    assert body["buyCreditsUrl"].endswith(f"/o/{world.org.pk}/credits/")
    assert not LedgerEntry.objects.filter(kind="usage").exists()


def test_billing_managers_and_strangers_cannot_spend(funded: World) -> None:
    assert spend(api(funded.billing, funded.org)).status_code == 403
    outsider = spend(api(funded.outsider, funded.org))
    assert (outsider.status_code, outsider.json()["error"]) == (403, "forbidden")
    unknown = api(funded.member).post(
        "/api/usage",
        json.dumps({"request_id": "x", **SONNET}),
        content_type="application/json",
        headers={"X-KiloCode-OrganizationId": "00000000-0000-0000-0000-000000000000"},
    )
    assert unknown.status_code == 403
    assert unknown.json() == outsider.json()  # nothing says whether it exists
    garbage = api(funded.member).get(
        "/api/profile/balance", headers={"X-KiloCode-OrganizationId": "acme"}
    )
    assert garbage.status_code == 403
    assert account_for(organization=funded.org).balance == 1_000_000


def test_tokens_are_required_and_checked(world: World) -> None:
    assert Client().get("/api/profile").status_code == 401
    bad = Client(headers={"Authorization": "Bearer kb_not-a-token"}).get("/api/profile")
    assert (bad.status_code, bad.json()["error"]) == (401, "unauthorized")
    token, raw = api_token_create(user=world.member, name="t")
    assert ApiToken.objects.get(pk=token.pk).token_hash != raw  # stored hashed
    assert raw not in str(ApiToken.objects.filter(pk=token.pk).values().get())
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    assert Client(headers={"Authorization": f"Bearer {raw}"}).get("/api/profile").status_code == 401


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"model": "gpt-99"}, 400, "model"),
        ({"input_tokens": -1}, 422, "input_tokens"),
        ({"output_tokens": 10**12}, 422, "output_tokens"),
        ({"request_id": ""}, 422, "request_id"),
        ({"input_tokens": "many"}, 422, "input_tokens"),
    ],
)
def test_malformed_usage_names_the_field(
    funded: World, body: dict[str, object], status: int, field: str
) -> None:
    response = spend(api(funded.member, funded.org), **body)
    assert response.status_code == status
    payload = response.json()
    assert payload.get("field") == field or field in payload.get("fields", [])
    assert not UsageRecord.objects.exists()


def test_a_missing_request_id_is_named(funded: World) -> None:
    response = api(funded.member, funded.org).post(
        "/api/usage", json.dumps(SONNET), content_type="application/json"
    )
    assert response.status_code == 422
    assert "request_id" in response.json()["fields"]


def test_bodies_over_64_kb_are_refused(funded: World) -> None:
    response = spend(api(funded.member, funded.org), project="x" * 70_000)
    assert response.status_code == 400
    assert response.json()["field"] == "body"
    assert not UsageRecord.objects.exists()


def test_the_daily_limit_per_member_resets_at_midnight(funded: World) -> None:
    account = account_for(organization=funded.org)
    CreditAccount.objects.filter(pk=account.pk).update(member_daily_limit=SONNET_COST * 2)
    account.refresh_from_db()
    client = api(funded.member, funded.org)
    with time_machine.travel("2026-11-27 23:00:00+00:00", tick=False):
        assert spend(client, "a").status_code == 201
        assert spend(client, "b").status_code == 201
        refused = spend(client, "c")
        assert (refused.status_code, refused.json()["error"]) == (402, "member_daily_limit")
    with time_machine.travel("2026-11-28 00:00:01+00:00", tick=False):
        assert spend(client, "c").status_code == 201


def test_each_token_is_rate_limited(funded: World, settings) -> None:  # type: ignore[no-untyped-def]
    settings.API_RATE_LIMIT_PER_MINUTE = 3
    client = api(funded.member)
    with time_machine.travel("2026-11-27 10:00:30+00:00", tick=False):
        statuses = [client.get("/api/profile").status_code for _ in range(4)]
        limited = client.get("/api/profile")
    assert statuses == [200, 200, 200, 429]
    assert limited["Retry-After"] == "30"
    with time_machine.travel("2026-11-27 10:01:01+00:00", tick=False):
        assert client.get("/api/profile").status_code == 200


def test_models_list_prices_in_microdollars_per_million(world: World) -> None:
    models = api(world.member).get("/api/models").json()["models"]
    sonnet = next(m for m in models if m["id"] == "claude-sonnet-4")
    assert sonnet["prices"] == {
        "input": 3_000_000,
        "output": 15_000_000,
        "cache_read": 300_000,
        "cache_write": 3_750_000,
    }
    assert len(models) >= 15


def test_profile_usage_shows_only_the_callers_own(funded: World) -> None:
    Membership.objects.filter(user=funded.admin).update(role="member")
    spend(api(funded.member, funded.org), "m1")
    spend(api(funded.admin, funded.org), "a1")
    body = api(funded.member, funded.org).get("/api/profile/usage").json()
    assert [d["cost_microdollars"] for d in body["by_day"]] == [SONNET_COST]
    assert body["by_model"][0]["requests"] == 1


def test_last_use_is_recorded(world: World) -> None:
    token, raw = api_token_create(user=world.member, name="t")
    Client(headers={"Authorization": f"Bearer {raw}"}).get("/api/profile")
    token.refresh_from_db()
    assert token.last_used_at is not None
    assert timezone.now() - token.last_used_at < timedelta(minutes=1)


def test_the_openapi_document_is_served(db: None) -> None:
    doc = Client().get("/api/openapi.json").json()
    assert {
        "/api/profile",
        "/api/profile/balance",
        "/api/usage",
        "/api/profile/usage",
        "/api/models",
    } <= set(doc["paths"])


def test_a_new_user_has_a_personal_account_at_zero(db: None) -> None:
    user = UserFactory()
    assert api(user).get("/api/profile/balance").json()["isDepleted"] is True
