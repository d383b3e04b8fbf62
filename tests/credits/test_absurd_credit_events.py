"""Signed events with absurd objects for the credits handlers (refunds, disputes, Checkout ending
or paid): the endpoint answers 200, never 500; the credits handlers ask the gateway about nothing
that is not an id, end or credit no purchase, and move no money. The purchase page refuses
absurd purchase ids with a 404."""

import contextlib
import uuid
from typing import Any

import pytest
from django.urls import reverse

from credits import webhooks
from credits.models import LedgerEntry, Purchase
from credits.services import account_for
from payments.gateway import GatewayError
from payments.models import WebhookEvent
from tests.conftest import World, client_for
from tests.invoices.test_sync import post_event, process_pending

pytestmark = pytest.mark.django_db

ABSURD_IDS: list[Any] = [
    "x" * 5_000,
    "cs_test_' OR 1=1 --",
    "",
    None,
    12345678901234567890123,
    -1,
    ["cs_test_a"],
    {"id": {"id": "cs_test_a"}},
    "cs_\u202etset",
]
ABSURD_PURCHASE_IDS: list[Any] = ["9" * 40, "-1", "1e3", "٣", " 1", None, [], {}, 2**70]

HANDLERS = {
    "checkout.session.expired": webhooks.checkout_expired,
    "checkout.session.async_payment_failed": webhooks.checkout_payment_failed,
    "checkout.session.completed": webhooks.checkout_paid,
    "checkout.session.async_payment_succeeded": webhooks.checkout_paid,
    "invoice.paid": webhooks.invoice_paid,
    "charge.refunded": webhooks.refund_changed,
    "refund.failed": webhooks.refund_changed,
    "charge.dispute.created": webhooks.dispute_changed,
}


def event(event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"evt_absurd_{uuid.uuid4().hex}",
        "object": "event",
        "api_version": "2026-08-27",
        "created": 1_800_000_000,
        "data": {"object": obj},
        "livemode": False,
        "type": event_type,
    }


def objects() -> list[dict[str, Any]]:
    found = []
    for absurd in ABSURD_IDS:
        found.append({"id": absurd, "payment_intent": absurd, "status": "expired"})
        found.append({"id": "cs_test_a1", "payment_intent": absurd, "payment_status": "paid"})
    for purchase_id in ABSURD_PURCHASE_IDS:
        found.append(
            {
                "id": "cs_test_a2",
                "status": "complete",
                "payment_status": "paid",
                "metadata": {"kind": "credit_purchase", "purchase_id": purchase_id},
            }
        )
    found += [{"id": "cs_test_a3", "metadata": "credit_purchase"}, {}]
    return found


@pytest.fixture
def waiting(world: World) -> Purchase:
    """A purchase waiting at Checkout, which no absurd event may end or credit."""
    response = client_for(world.owner).post(
        reverse("org_confirm", args=[world.org.pk]),
        {"amount_cents": 5_000, "key": str(uuid.uuid4())},
    )
    assert response.status_code == 302
    return Purchase.objects.get()


@pytest.mark.parametrize("event_type", list(HANDLERS))
def test_absurd_objects_move_nothing_and_never_answer_500(
    world: World, waiting: Purchase, event_type: str
) -> None:
    for obj in objects():
        payload = event(event_type, obj)
        # The credits handler itself takes it calmly (an id of the right shape that the gateway
        # does not know is the gateway's "No such …", which dispatch retries, then sets aside)...
        with contextlib.suppress(GatewayError):
            HANDLERS[event_type](WebhookEvent(payload=payload, type=event_type))
        # ... and through the endpoint and dispatch nothing answers 500.
        assert post_event(payload) == 200
    process_pending()
    waiting.refresh_from_db()
    assert waiting.status == "pending"
    assert not LedgerEntry.objects.exists()
    assert account_for(organization=world.org).balance == 0
    assert WebhookEvent.objects.count() == len(objects())


@pytest.mark.parametrize("purchase_id", ["99999999999999999999999", "0", str(2**63)])
def test_an_absurd_purchase_id_is_a_404(world: World, purchase_id: str) -> None:
    url = f"/o/{world.org.pk}/credits/purchases/{purchase_id}/"
    assert client_for(world.owner).get(url).status_code == 404
