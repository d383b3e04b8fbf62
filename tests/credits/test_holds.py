"""Holds for streaming requests: reserve the list price of the maximum tokens, settle the actual
cost once, release or expire without a debit. Under any concurrency balance − held ≥ 0, and
every settle and release answers the same when repeated."""

import json
import threading
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.db.models import Sum
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from credits.models import CreditAccount, Hold, LedgerEntry, UsageRecord
from credits.pricing import price_in_force, usage_cost
from credits.services import account_for, api_token_create, holds_expire
from dunning.lifecycle import organization_suspend
from organizations.models import Membership
from tests.conftest import World, client_for
from tests.credits.conftest import fund, seat_everyone
from tests.credits.test_api import SONNET_COST, api, spend

DOLLAR = 1_000_000
# At claude-sonnet-4's list price ($3 in, $15 out per million): 1,000 in + 200 out = $0.006.
HOLD_MAX = {"max_input_tokens": 10_000, "max_output_tokens": 2_000}
HOLD_AMOUNT = 10_000 * 3 + 2_000 * 15  # $0.06


def hold(client: Client, request_id: str = "h-1", **extra: object):  # type: ignore[no-untyped-def]
    body = {"request_id": request_id, "provider": "anthropic", "model": "claude-sonnet-4"}
    return client.post(
        "/api/holds", json.dumps({**body, **HOLD_MAX, **extra}), content_type="application/json"
    )


def settle(client: Client, hold_id: int, input_tokens: int = 1000, output_tokens: int = 200):  # type: ignore[no-untyped-def]
    return client.post(
        f"/api/holds/{hold_id}/settle",
        json.dumps({"input_tokens": input_tokens, "output_tokens": output_tokens}),
        content_type="application/json",
    )


def release(client: Client, hold_id: int):  # type: ignore[no-untyped-def]
    return client.post(f"/api/holds/{hold_id}/release")


def account(world: World) -> CreditAccount:
    return CreditAccount.objects.get(organization=world.org)


def ledger_sum(account: CreditAccount) -> int:
    return LedgerEntry.objects.filter(account=account).aggregate(total=Sum("amount"))["total"]


@pytest.fixture
def funded(world: World) -> World:
    seat_everyone(world.org, world.owner)
    fund(account_for(organization=world.org), DOLLAR)
    return world


def test_a_hold_reserves_then_settles_once_and_frees_the_rest(funded: World) -> None:
    member = api(funded.member, funded.org)
    created = hold(member)
    assert created.status_code == 201
    body = created.json()
    assert (body["amount_microdollars"], body["available_microdollars"]) == (
        HOLD_AMOUNT,
        DOLLAR - HOLD_AMOUNT,
    )
    again = hold(member)
    assert (again.status_code, again.json()) == (200, body)
    balance = member.get("/api/profile/balance").json()
    assert (balance["held_microdollars"], balance["available_microdollars"]) == (
        HOLD_AMOUNT,
        DOLLAR - HOLD_AMOUNT,
    )

    settled = settle(member, body["hold_id"])
    assert settled.status_code == 201
    answer = settled.json()
    assert answer == {
        "cost_microdollars": SONNET_COST,
        "balance_microdollars": DOLLAR - SONNET_COST,
        "entry_id": answer["entry_id"],
        "released_microdollars": HOLD_AMOUNT - SONNET_COST,
        "uncollected_microdollars": 0,
    }
    repeat = settle(member, body["hold_id"])
    assert (repeat.status_code, repeat.json()) == (200, answer)
    acme = account(funded)
    assert (acme.balance, acme.held) == (DOLLAR - SONNET_COST, 0)
    assert acme.balance == ledger_sum(acme)
    entry = LedgerEntry.objects.get(pk=answer["entry_id"])
    assert (entry.kind, entry.source, entry.idempotency_key) == ("usage", "hold", "h-1")
    assert UsageRecord.objects.get(entry=entry).cost == SONNET_COST
    # Settled: it cannot be released, nor settled with other counts.
    assert release(member, body["hold_id"]).json()["error"] == "hold_settled"
    assert settle(member, body["hold_id"], input_tokens=5).status_code == 409


def test_a_release_frees_everything_and_debits_nothing(funded: World) -> None:
    member = api(funded.member, funded.org)
    hold_id = hold(member).json()["hold_id"]
    freed = release(member, hold_id)
    assert freed.json() == {"released_microdollars": HOLD_AMOUNT, "available_microdollars": DOLLAR}
    assert release(member, hold_id).json() == freed.json()  # again: the same
    refused = settle(member, hold_id)
    assert (refused.status_code, refused.json()["error"]) == (409, "hold_released")
    acme = account(funded)
    assert (acme.balance, acme.held) == (DOLLAR, 0)
    assert not UsageRecord.objects.exists()


def test_a_cost_above_the_hold_takes_from_what_is_available_never_below_zero(
    world: World,
) -> None:
    seat_everyone(world.org, world.owner)
    fund(account_for(organization=world.org), HOLD_AMOUNT + 5_000)
    member = api(world.member, world.org)
    hold_id = hold(member).json()["hold_id"]
    # 10× the maximum: $0.60 at list price, with $0.065 to take from.
    answer = settle(member, hold_id, input_tokens=100_000, output_tokens=20_000).json()
    full_cost = 100_000 * 3 + 20_000 * 15
    assert answer["cost_microdollars"] == HOLD_AMOUNT + 5_000
    assert answer["uncollected_microdollars"] == full_cost - HOLD_AMOUNT - 5_000
    assert answer["released_microdollars"] == 0
    acme = account(world)
    assert (acme.balance, acme.held) == (0, 0)
    record = UsageRecord.objects.get()
    assert (record.cost, record.uncollected) == (HOLD_AMOUNT + 5_000, full_cost - 65_000)


def test_an_expired_hold_is_freed_by_beat_without_a_debit(funded: World) -> None:
    member = api(funded.member, funded.org)
    start = timezone.now()
    with time_machine.travel(start, tick=False) as traveller:
        hold_id = hold(member, ttl_seconds=60).json()["hold_id"]
        assert holds_expire() == 0
        traveller.move_to(start + timedelta(seconds=61))
        assert holds_expire() == 1
        assert holds_expire() == 0
    stored = Hold.objects.get(pk=hold_id)
    assert (stored.status, stored.released) == ("expired", HOLD_AMOUNT)
    acme = account(funded)
    assert (acme.balance, acme.held) == (DOLLAR, 0)
    refused = settle(member, hold_id)
    assert (refused.status_code, refused.json()["error"]) == (409, "hold_expired")


def test_a_hold_past_its_expiry_is_not_settled_even_before_beat_ran(funded: World) -> None:
    member = api(funded.member, funded.org)
    start = timezone.now()
    with time_machine.travel(start, tick=False) as traveller:
        hold_id = hold(member, ttl_seconds=30).json()["hold_id"]
        traveller.move_to(start + timedelta(seconds=31))
        assert settle(member, hold_id).json()["error"] == "hold_expired"
    assert account(funded).held == 0
    assert not UsageRecord.objects.exists()


@pytest.mark.parametrize("ttl", [0, 3601, "600", 1.5])
def test_the_time_to_live_is_a_whole_number_of_seconds_up_to_an_hour(
    funded: World, ttl: object
) -> None:
    response = hold(api(funded.member, funded.org), ttl_seconds=ttl)
    assert response.status_code == 422
    assert response.json()["fields"] == ["ttl_seconds"]
    assert not Hold.objects.exists()


def test_usage_spends_only_what_is_available(world: World) -> None:
    seat_everyone(world.org, world.owner)
    fund(account_for(organization=world.org), HOLD_AMOUNT + SONNET_COST - 1)
    member = api(world.member, world.org)
    assert hold(member).status_code == 201
    refused = spend(member, "over")
    assert (refused.status_code, refused.json()["error"]) == (402, "insufficient_balance")
    assert hold(member, "second").status_code == 402
    assert account(world).balance == HOLD_AMOUNT + SONNET_COST - 1


def test_the_same_rules_as_usage_apply_to_a_hold(funded: World) -> None:
    billing = hold(api(funded.billing, funded.org))
    assert (billing.status_code, billing.json()["error"]) == (403, "forbidden")
    stranger = hold(api(funded.outsider, funded.org))
    assert (stranger.status_code, stranger.json()["error"]) == (403, "forbidden")
    unknown = hold(api(funded.member, funded.org), model="gpt-9000")
    assert (unknown.status_code, unknown.json()["error"]) == (400, "unknown_model")
    organization_suspend(organization=funded.org, reason="staff", actor=funded.owner)
    suspended = hold(api(funded.member, funded.org))
    assert (suspended.status_code, suspended.json()["error"]) == (402, "organization_suspended")
    assert not Hold.objects.exists()


def test_nobody_settles_or_releases_another_persons_hold(funded: World) -> None:
    hold_id = hold(api(funded.member, funded.org)).json()["hold_id"]
    for person in (funded.owner, funded.outsider):
        assert settle(api(person, funded.org), hold_id).status_code == 404
        assert release(api(person, funded.org), hold_id).status_code == 404
    assert settle(api(funded.member, funded.org), 10**12).status_code == 404
    assert account(funded).held == HOLD_AMOUNT


def test_a_member_removed_mid_stream_still_settles_what_was_used(funded: World) -> None:
    member = api(funded.member, funded.org)
    hold_id = hold(member).json()["hold_id"]
    Membership.objects.filter(user=funded.member).delete()
    assert settle(member, hold_id).status_code == 201
    assert account(funded).balance == DOLLAR - SONNET_COST


@pytest.mark.django_db(transaction=True)
def test_32_parallel_holds_on_a_dollar_never_reserve_more_than_is_available(
    world: World,
) -> None:
    """The issue's case: each hold is $0.06; a $1 balance has room for 16."""
    seat_everyone(world.org, world.owner)
    fund(account_for(organization=world.org), DOLLAR)
    _, raw = api_token_create(user=world.member, name="burst")
    headers = {"Authorization": f"Bearer {raw}", "X-KiloCode-OrganizationId": str(world.org.pk)}
    statuses: list[int] = []
    barrier = threading.Barrier(32)

    def one(n: int) -> None:
        try:
            barrier.wait()
            statuses.append(hold(Client(headers=headers), f"burst-{n}").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=one, args=(n,)) for n in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201] * 16 + [402] * 16
    acme = account(world)
    assert acme.held == 16 * HOLD_AMOUNT <= acme.balance == DOLLAR


@pytest.mark.django_db(transaction=True)
def test_64_parallel_holds_settles_and_debits_keep_balance_minus_held_at_least_zero(
    world: World,
) -> None:
    seat_everyone(world.org, world.owner)
    start = 20 * HOLD_AMOUNT + 3 * SONNET_COST
    fund(account_for(organization=world.org), start)
    _, raw = api_token_create(user=world.member, name="mixed")
    headers = {"Authorization": f"Bearer {raw}", "X-KiloCode-OrganizationId": str(world.org.pk)}
    settled: list[int] = []
    debited: list[int] = []
    worst: list[int] = []
    seen: list[object] = []
    barrier = threading.Barrier(64)

    def one(n: int) -> None:
        client = Client(headers=headers)
        try:
            barrier.wait()
            if n % 2:
                made = hold(client, f"mix-{n}")
                seen.append((made.status_code, made.content[:200]))
                if made.status_code == 201:
                    answer = settle(client, made.json()["hold_id"], 2_000, 500).json()
                    settled.append(answer["cost_microdollars"])
            else:
                response = spend(client, f"mix-{n}")
                if response.status_code == 201:
                    debited.append(response.json()["cost_microdollars"])
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT min(balance - held) FROM credits_creditaccount WHERE organization_id"
                    " = %s",
                    [world.org.pk],
                )
                worst.append(cursor.fetchone()[0])
        finally:
            connection.close()

    threads = [threading.Thread(target=one, args=(n,)) for n in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    acme = account(world)
    assert min(worst) >= 0
    assert acme.held == 0
    assert start - acme.balance == sum(settled) + sum(debited)
    assert acme.balance == ledger_sum(acme)
    assert settled, seen
    assert debited


def test_the_receipt_is_the_catalogues_arithmetic(funded: World) -> None:
    member = api(funded.member, funded.org)
    entry_id = spend(member, "receipt-1", cache_read_tokens=4_000).json()["entry_id"]
    receipt = member.get(f"/api/usage/{entry_id}").json()
    price = price_in_force(provider="anthropic", model_id="claude-sonnet-4")
    assert price is not None
    expected = usage_cost(price, input_tokens=1000, output_tokens=200, cache_read_tokens=4_000)
    assert receipt["cost_microdollars"] == expected
    assert receipt["tokens"] == {
        "input": 1000,
        "output": 200,
        "cache_read": 4_000,
        "cache_write": 0,
    }
    assert receipt["price"]["id"] == price.pk
    assert receipt["price"]["source_url"] == price.source_url
    assert receipt["price"]["effective_from"] == price.effective_from.isoformat()
    exact = sum(line["tokens"] * line["price_per_million"] for line in receipt["lines"])
    assert receipt["exact_microdollars_times_million"] == exact
    assert (exact + 500_000) // 1_000_000 == expected
    assert receipt["ledger_entry"]["amount_microdollars"] == -expected
    # Nobody else's receipt: not the owner's through their token, not a stranger's.
    assert api(funded.owner, funded.org).get(f"/api/usage/{entry_id}").status_code == 404
    assert api(funded.member).get(f"/api/usage/{entry_id}").status_code == 404
    assert api(funded.outsider, funded.org).get(f"/api/usage/{entry_id}").status_code == 403


def test_the_usage_tab_links_each_request_to_the_same_receipt(funded: World) -> None:
    entry_id = spend(api(funded.member, funded.org), "receipt-2", cache_read_tokens=4_000).json()[
        "entry_id"
    ]
    record = UsageRecord.objects.get(entry_id=entry_id)
    receipt_url = reverse("org_usage_receipt", args=[funded.org.pk, entry_id])
    member = client_for(funded.member)
    requests = member.get(reverse("org_usage_requests", args=[funded.org.pk])).content.decode()
    assert f'href="{receipt_url}"' in requests
    assert "1,000 / 200" in requests  # tokens in / out, grouped as everywhere else
    page = member.get(receipt_url).content.decode()
    # The same arithmetic as the API's receipt, each kind named as people say it, to the second.
    receipt = api(funded.member, funded.org).get(f"/api/usage/{entry_id}").json()
    for line in receipt["lines"]:
        assert f"{line['microdollars_times_million']:,}" in page
    assert "Cache read" in page
    assert "Cacheread" not in page
    assert f"{receipt['exact_microdollars_times_million']:,}" in page
    assert f"{receipt['cost_microdollars']:,} microdollars" in page
    assert f"{record.created_at:%Y-%m-%d %H:%M:%S} UTC" in page
    assert f"#{entry_id}, usage<" in page


def _in_parallel(count: int, act) -> None:  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(count)

    def one(n: int) -> None:
        try:
            barrier.wait()
            act(n)
        finally:
            connection.close()

    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.mark.django_db(transaction=True)
def test_32_retries_of_one_hold_then_32_racing_settles_and_releases_move_once(
    world: World,
) -> None:
    """The same hold asked for 32 times at once is one hold; 16 settles and 16 releases of it
    at once: one of them wins, the others answer its outcome or 409, and the money moves once."""
    seat_everyone(world.org, world.owner)
    fund(account_for(organization=world.org), DOLLAR)
    _, raw = api_token_create(user=world.member, name="retries")
    headers = {"Authorization": f"Bearer {raw}", "X-KiloCode-OrganizationId": str(world.org.pk)}
    created: list[tuple[int, int]] = []

    def ask(n: int) -> None:
        response = hold(Client(headers=headers), "same-stream")
        created.append((response.status_code, response.json()["hold_id"]))

    _in_parallel(32, ask)
    assert sorted(status for status, _ in created) == [200] * 31 + [201]
    (hold_id,) = {hold_id for _, hold_id in created}
    assert Hold.objects.count() == 1
    assert account(world).held == HOLD_AMOUNT

    answers: list[int] = []

    def settle_or_release(n: int) -> None:
        client = Client(headers=headers)
        response = settle(client, hold_id) if n % 2 else release(client, hold_id)
        answers.append(response.status_code)

    _in_parallel(32, settle_or_release)
    assert 500 not in answers
    assert set(answers) <= {200, 201, 409}
    acme = account(world)
    assert acme.held == 0
    assert acme.balance == ledger_sum(acme)
    settled = LedgerEntry.objects.filter(kind="usage").count()
    assert settled in (0, 1)
    assert acme.balance == DOLLAR - settled * SONNET_COST
    assert answers.count(201) == settled


def test_absurd_holds_are_refused_and_hold_nothing(funded: World) -> None:
    member = api(funded.member, funded.org)
    body = {"request_id": "absurd", "provider": "anthropic", "model": "claude-sonnet-4"}
    absurd = [
        {**body, **HOLD_MAX, "max_input_tokens": 10**20},
        {**body, **HOLD_MAX, "max_output_tokens": -1},
        {**body, **HOLD_MAX, "request_id": "nul\x00byte"},
        {**body, **HOLD_MAX, "request_id": "r" * 10_000},
        {**body, **HOLD_MAX, "project": "p" * 10_000},
        {**body, **HOLD_MAX, "ttl_seconds": 10**20},
    ]
    for payload in absurd:
        response = member.post("/api/holds", json.dumps(payload), content_type="application/json")
        assert response.status_code in (400, 422), (payload, response.status_code)
    raw = '{"request_id": "x", "provider": "anthropic", "model": "claude-sonnet-4", '
    for number in ("1e309", "NaN", "1.5"):
        response = member.post(
            "/api/holds",
            f'{raw}"max_input_tokens": {number}, "max_output_tokens": 1}}',
            content_type="application/json",
        )
        assert response.status_code in (400, 422), (number, response.status_code)
    for hold_id in (10**20, -1, 0):
        assert settle(member, hold_id).status_code in (404, 422)
        assert release(member, hold_id).status_code in (404, 422)
    assert not Hold.objects.exists()
    assert account(funded).held == 0


def test_a_hold_whose_request_id_looks_like_a_system_key_is_only_a_hold(funded: World) -> None:
    """Hold keys live in the `hold` namespace: shapes of the system's keys reach nothing else."""
    member = api(funded.member, funded.org)
    for request_id in ("purchase:1", "refund:re_1", "dispute:du_1", "hold:1", "1", "expiry"):
        created = hold(member, request_id)
        assert created.status_code == 201, (request_id, created.json())
        assert settle(member, created.json()["hold_id"]).status_code == 201
    acme = account(funded)
    assert acme.balance == DOLLAR - 6 * SONNET_COST == ledger_sum(acme)
    entries = LedgerEntry.objects.filter(account=acme).exclude(kind="grant")
    assert set(entries.values_list("kind", "source")) == {("usage", "hold")}


def test_a_member_sees_only_their_own_requests_and_receipts(funded: World) -> None:
    mine = spend(api(funded.member, funded.org), "member-own").json()["entry_id"]
    theirs = spend(api(funded.owner, funded.org), "owner-own").json()["entry_id"]
    member = client_for(funded.member)
    requests = member.get(reverse("org_usage_requests", args=[funded.org.pk])).content.decode()
    own = reverse("org_usage_receipt", args=[funded.org.pk, mine])
    other = reverse("org_usage_receipt", args=[funded.org.pk, theirs])
    assert f'href="{own}"' in requests
    assert f'href="{other}"' not in requests
    assert member.get(own).status_code == 200
    assert member.get(other).status_code == 404
    # The owner sees everyone's; an organization's entry is no personal receipt.
    assert client_for(funded.owner).get(other).status_code == 200
    personal = reverse("personal_usage_receipt", args=[mine])
    assert member.get(personal).status_code == 404
