"""Redis stopped: the dashboard and the API keep serving (Redis holds only the cache, rate limits
and the Celery queue), a signed webhook is stored and answered 200, and once Redis is back the
beat sweep runs what could not be queued."""

import json
from typing import Any

import pytest
from django.http import HttpResponse
from django.urls import reverse
from django.utils import timezone

from credits.models import CreditAccount, LedgerEntry
from credits.services import account_for, api_token_create
from organizations.models import AuditEvent
from payments import tasks
from payments.models import WebhookEvent
from tests.conftest import World, client_for
from tests.credits.conftest import fund, seat_everyone
from tests.factories import PASSWORD
from tests.faults.conftest import (
    RedisServer,
    Workers,
    post_webhook,
    through_the_broker,
    timed,
    wait_for,
)

PROCESSED = "test.faults.processed"


def spend(token: str, world: World, request_id: str) -> HttpResponse:
    return client_for(None).post(
        "/api/usage",
        json.dumps(
            {
                "request_id": request_id,
                "provider": "anthropic",
                "model": "claude-sonnet-4",
                "input_tokens": 1000,
                "output_tokens": 100,
            }
        ),
        content_type="application/json",
        headers={
            "Authorization": f"Bearer {token}",
            "X-KiloCode-OrganizationId": str(world.org.pk),
        },
    )


@pytest.mark.django_db(transaction=True)
def test_it_keeps_serving_while_redis_is_down_and_catches_up_after(
    world: World, workers: Workers, pointed_at: RedisServer
) -> None:
    seat_everyone(world.org, world.owner)
    account = account_for(organization=world.org)
    fund(account, 5_000_000)
    _, token = api_token_create(user=world.member, name="extension")

    pointed_at.stop()

    with through_the_broker(pointed_at), timed(30, "the dashboard, the API and the webhook"):
        health = client_for(None).get(reverse("healthz"))
        assert (health.status_code, health.json()) == (503, {"database": "ok", "redis": "down"})

        credits_page = client_for(world.owner).get(reverse("org_credits", args=[world.org.pk]))
        assert credits_page.status_code == 200
        assert "$5.00" in credits_page.content.decode()
        overview = client_for(world.member).get(reverse("org_overview", args=[world.org.pk]))
        assert overview.status_code == 200

        login = client_for(None).post(
            reverse("login"), {"username": world.billing.email, "password": PASSWORD}
        )
        assert login.status_code == 302  # the log-in limiter fails open

        spent = spend(token, world, "while-redis-is-down")
        assert spent.status_code == 201, spent.content
        account.refresh_from_db()
        assert account.balance == 5_000_000 - spent.json()["cost_microdollars"]
        assert LedgerEntry.objects.filter(idempotency_key="while-redis-is-down").count() == 1

        response = post_webhook("test.faults.counted", "evt_while_down")
        assert response.status_code == 200
        assert response.json() == {"received": True, "duplicate": False}

    stored = WebhookEvent.objects.get(event_id="evt_while_down")
    assert stored.status == WebhookEvent.Status.PENDING
    assert workers.started_events() == []

    pointed_at.start()
    workers.start()
    assert workers.started_events() == []  # nothing was queued for it while Redis was down
    # The sweep picks up pending events whose own task apparently never ran, after a delay.
    WebhookEvent.objects.filter(pk=stored.pk).update(next_attempt_at=timezone.now())
    with through_the_broker(pointed_at):
        tasks.webhook_events_retry.apply_async()  # as beat sends it every 5 minutes

    wait_for(
        lambda: WebhookEvent.objects.get(pk=stored.pk).status == WebhookEvent.Status.PROCESSED,
        timeout=30,
        what="the retry sweep to process the stored event",
    )
    stored.refresh_from_db()
    assert stored.attempts == 1
    assert AuditEvent.objects.filter(action=PROCESSED, target="evt_while_down").count() == 1
    assert workers.started_events() == ["evt_while_down"]


def test_it_answers_at_once_while_redis_is_down(
    world: World, throwaway_redis: RedisServer, django_capture_on_commit_callbacks: Any
) -> None:
    """A webhook, and a debit that claims an auto top-up, each queue a task after commit."""
    seat_everyone(world.org, world.owner)
    account = account_for(organization=world.org)
    fund(account, 2_000_000)
    CreditAccount.objects.filter(pk=account.pk).update(
        auto_topup_enabled=True, auto_topup_threshold=10_000_000
    )
    _, token = api_token_create(user=world.member, name="extension")
    throwaway_redis.stop()
    with through_the_broker(throwaway_redis):
        with timed(1, "a webhook"), django_capture_on_commit_callbacks(execute=True):
            assert post_webhook("test.faults.counted", "evt_quick").status_code == 200
        with (
            timed(1, "a debit that claims a top-up"),
            django_capture_on_commit_callbacks(execute=True),
        ):
            assert spend(token, world, "quick-1").status_code == 201
    assert WebhookEvent.objects.filter(event_id="evt_quick").exists()
