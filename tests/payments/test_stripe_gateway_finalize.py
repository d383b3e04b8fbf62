"""StripeGateway.invoice_finalize and the error codes callers tell apart (resource_missing for a
deleted customer, customer_tax_location_invalid for a draft that cannot be finalized), at the
HTTP boundary of test_stripe_gateway.py."""

from collections.abc import Iterator
from typing import Any

import pytest

from payments.gateway import GatewayError
from payments.stripe_gateway import StripeGateway
from tests.payments.test_stripe_gateway import (
    INVOICE,
    FakeStripe,
    _no_network,  # noqa: F401 - the autouse fixture that refuses the network
    invalid_request_json,
    invoice_json,
)


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    client = FakeStripe()
    yield client
    assert client.unanswered == 0, "some canned answers were never asked for"


@pytest.fixture
def gateway(fake: FakeStripe) -> StripeGateway:
    return StripeGateway(api_key="sk_test_51KiloBillingFakeKey", http_client=fake)


def held_draft() -> dict[str, Any]:
    """A renewal Stripe keeps as a draft while the subscription is unpaid."""
    return {**invoice_json(status="draft"), "auto_advance": False, "number": None}


def test_it_finalizes_a_draft_without_automatic_collection_and_reads_what_it_says(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    # https://docs.stripe.com/api/invoices/finalize: auto_advance false, so that the explicit
    # payment that follows is the only one.
    fake.answer(held_draft())
    draft = gateway.invoice_retrieve(invoice_id=INVOICE)
    assert (draft.status, draft.auto_advance) == ("draft", False)
    fake.answer(held_draft())
    fake.answer({**invoice_json(status="open"), "auto_advance": False})
    finalized = gateway.invoice_finalize(invoice_id=INVOICE)
    assert (finalized.status, finalized.auto_advance) == ("open", True)  # read for drafts only
    assert [(sent.method, sent.path) for sent in fake.sent] == [
        ("get", f"/v1/invoices/{INVOICE}"),
        ("get", f"/v1/invoices/{INVOICE}"),
        ("post", f"/v1/invoices/{INVOICE}/finalize"),
    ]
    assert fake.sent[-1].params == {"auto_advance": "false"}


def test_an_invoice_already_finalized_is_returned_as_it_is(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    fake.answer(invoice_json(status="paid"))
    assert gateway.invoice_finalize(invoice_id=INVOICE).status == "paid"
    assert [sent.method for sent in fake.sent] == ["get"]


def test_a_refused_finalization_carries_stripes_code_and_the_invoice_its_error(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    # https://docs.stripe.com/tax/customer-locations, "Invoice finalization errors".
    message = "The customer's location isn't recognized."
    error = invalid_request_json(message)
    error["error"]["code"] = "customer_tax_location_invalid"
    fake.answer(held_draft())
    fake.answer(error, 400)
    with pytest.raises(GatewayError) as refused:
        gateway.invoice_finalize(invoice_id=INVOICE)
    assert (refused.value.code, refused.value.http_status) == ("customer_tax_location_invalid", 400)
    assert not refused.value.missing
    fake.answer(
        {
            **held_draft(),
            "last_finalization_error": error["error"],
        }
    )
    draft = gateway.invoice_retrieve(invoice_id=INVOICE)
    assert (draft.finalization_error_code, draft.finalization_error) == (
        "customer_tax_location_invalid",
        message,
    )


def test_a_deleted_customer_is_resource_missing(fake: FakeStripe, gateway: StripeGateway) -> None:
    # https://docs.stripe.com/error-codes#resource-missing
    fake.answer(invalid_request_json("No such customer: 'cus_gone'", param="customer"), 404)
    with pytest.raises(GatewayError) as missing:
        gateway.payment_method_default(customer_id="cus_gone")
    assert (missing.value.code, missing.value.http_status, missing.value.missing) == (
        "resource_missing",
        404,
        True,
    )
