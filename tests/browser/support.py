"""What the browser journeys share: where Chromium is, and how to wait for the asynchronous half
of a payment (the worker delivering the sandbox's events and processing them) without sleeping."""

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from payments.models import WebhookEvent
from payments.sandbox.models import SandboxEvent

T = TypeVar("T")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
POLL_INTERVAL = 0.1

requires_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"browser journeys need Debian's Chromium at {CHROMIUM} (apt-get install chromium; "
    "make test installs it when run as root)",
)


def wait_until(condition: Callable[[], T], *, what: str, timeout: float = 30.0) -> T:
    """Poll `condition` until it returns something truthy; fail saying what never happened."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(POLL_INTERVAL)


def _settled() -> bool:
    undelivered = SandboxEvent.objects.filter(
        delivered_at__isnull=True, next_attempt_at__isnull=False
    )
    # An attempt on its way has no answer yet; one with an answer and still undelivered was
    # refused.
    refused = undelivered.exclude(last_response="").first()
    if refused is not None:
        # The endpoint answered something other than 2xx; only beat would try again.
        raise AssertionError(
            f"the webhook endpoint refused sandbox event {refused.type}: {refused.last_response}"
        )
    owed = WebhookEvent.objects.filter(
        status__in=[WebhookEvent.Status.PENDING, WebhookEvent.Status.PROCESSING]
    )
    return not undelivered.exists() and not owed.exists()


def settle(*, timeout: float = 30.0) -> None:
    """Wait until the worker has delivered every sandbox event to the live server's
    /stripe/webhook/ and processed every stored event, then check that none failed.

    No gap lets this pass early: an event stays undelivered until the endpoint has stored it
    (pending), and a stored event stays pending or processing until its handlers have run, and
    the events they emit were made before that."""
    wait_until(_settled, what="the worker to deliver and process every event", timeout=timeout)
    failed = list(
        WebhookEvent.objects.filter(status=WebhookEvent.Status.FAILED).values_list(
            "type", "last_error"
        )
    )
    assert not failed, f"webhook processing failed: {failed}"
