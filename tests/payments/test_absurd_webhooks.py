"""Validly signed bodies that are not events we can take: each gets a 400 with its reason, never a
500; one whose event id can be read is stored as failed with the reason (visible to staff, owed
nothing, never replayed into the handlers); nothing reaches a handler."""

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from payments import dispatch
from payments.models import WebhookEvent
from payments.signing import signature_header

SECRET = "whsec_absurd_secret"
URL = reverse("stripe_webhook")
ran: list[str] = []


@pytest.fixture(autouse=True)
def _secret_and_a_handler(settings: Any) -> Iterator[None]:
    settings.STRIPE_WEBHOOK_SECRET = SECRET

    def handler(event: WebhookEvent) -> None:
        ran.append(event.event_id)

    dispatch.handles("test.absurd")(handler)
    ran.clear()
    yield
    dispatch._handlers["test.absurd"].remove(handler)


def _post(body: bytes) -> Any:
    header = signature_header(body, secret=SECRET)
    return Client().post(
        URL, data=body, content_type="application/json", headers={"Stripe-Signature": header}
    )


def _event(event_id: str, *, created: str | None = None, obj: str = '{"id": "in_1"}') -> bytes:
    """An event written by hand, so that its values can be anything JSON can say."""
    created = created if created is not None else str(int(time.time()))
    return (
        f'{{"id": "{event_id}", "object": "event", "api_version": "2026-08-27", '
        f'"created": {created}, "data": {{"object": {obj}}}, "livemode": false, '
        f'"type": "test.absurd"}}'
    ).encode()


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


STORED_AS_FAILED = [
    ("evt_deep", _event("evt_deep", obj='{"x": ' + _nested(100_000) + "}"), "nested too deeply"),
    (
        "evt_nested_200",
        _event("evt_nested_200", obj='{"x": ' + _nested(200) + "}"),
        "deeper than 64",
    ),
    ("evt_created_1e20", _event("evt_created_1e20", created="1e20"), "between 2000 and 2100"),
    (
        "evt_created_int_1e20",
        _event("evt_created_int_1e20", created="1" + "0" * 20),
        "between 2000",
    ),
    ("evt_created_1e309", _event("evt_created_1e309", created="1e309"), "not a finite number"),
    ("evt_created_nan", _event("evt_created_nan", created="NaN"), "NaN is not a number"),
    ("evt_created_inf", _event("evt_created_inf", created="-Infinity"), "not a number"),
    ("evt_created_negative", _event("evt_created_negative", created="-1"), "between 2000"),
    ("evt_created_zero", _event("evt_created_zero", created="0"), "between 2000"),
    ("evt_created_text", _event("evt_created_text", created='"yesterday"'), "between 2000"),
    ("evt_created_true", _event("evt_created_true", created="true"), "between 2000"),
    ("evt_amount_1e309", _event("evt_amount_1e309", obj='{"amount_due": 1e309}'), "finite"),
    ("evt_nul", _event("evt_nul", obj='{"description": "a\\u0000b"}'), "NUL"),
    ("evt_surrogate", _event("evt_surrogate", obj='{"description": "\\ud800"}'), "surrogate"),
    ("evt_nul_key", _event("evt_nul_key", obj='{"a\\u0000": 1}'), "NUL"),
    ("evt_no_object", _event("evt_no_object", obj="[1, 2]"), "data.object"),
    ("evt_truncated", _event("evt_truncated")[:-5], "not JSON"),
    ("evt_no_type", json.dumps({"id": "evt_no_type", "created": 1_800_000_000}).encode(), "type"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("event_id", "body", "reason"), STORED_AS_FAILED)
def test_a_signed_absurd_event_is_refused_and_kept_as_failed(
    event_id: str, body: bytes, reason: str
) -> None:
    assert len(body) < 1024 * 1024
    response = _post(body)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_payload"
    assert reason in response.json()["reason"]
    stored = WebhookEvent.objects.get(event_id=event_id)
    assert stored.status == WebhookEvent.Status.FAILED
    assert stored.last_error.startswith("Refused at intake: ")
    assert reason in stored.last_error
    assert stored.next_attempt_at is None
    assert stored.payload["id"] == event_id
    # Stripe retries: counted, still refused, still owed nothing, and staff replay runs nothing.
    assert _post(body).status_code == 400
    stored.refresh_from_db()
    assert (stored.deliveries, stored.status) == (2, WebhookEvent.Status.FAILED)
    assert stored.pk not in dispatch.owed_event_ids(now=timezone.now() + timedelta(days=30))
    assert dispatch.webhook_event_replay(event=stored) == WebhookEvent.Status.FAILED
    stored.refresh_from_db()
    assert reason in stored.last_error
    assert ran == []


NOTHING_TO_STORE = [
    b"[]",
    b'"evt_1"',
    b"1",
    b"null",
    b"true",
    b"NaN",
    _nested(100_000).encode(),
    json.dumps({"id": "e" * 256, "type": "test.absurd", "created": 1_800_000_000}).encode(),
    json.dumps({"id": "evt_\x00", "type": "test.absurd", "created": 1_800_000_000}).encode(),
    json.dumps({"id": 12345, "type": "test.absurd", "created": 1_800_000_000}).encode(),
    json.dumps({"id": "", "type": "test.absurd", "created": 1_800_000_000}).encode(),
    b'{"type": "test.absurd", "id": ' + _nested(50_000).encode() + b"}",
]


@pytest.mark.django_db
@pytest.mark.parametrize("body", NOTHING_TO_STORE)
def test_a_signed_body_without_an_event_id_is_refused_and_not_stored(body: bytes) -> None:
    response = _post(body)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_payload"
    assert not WebhookEvent.objects.exists()
    assert ran == []


@pytest.mark.django_db
def test_a_sane_event_next_to_them_is_still_taken() -> None:
    body = _event("evt_sane", obj='{"id": "in_1", "nested": ' + _nested(40) + "}")
    assert _post(body).status_code == 200
    stored = WebhookEvent.objects.get(event_id="evt_sane")
    assert dispatch.webhook_event_process(webhook_event_id=stored.pk) == "processed"
    assert ran == ["evt_sane"]
