"""The one billing clock: the gateway's notion of now."""

from datetime import datetime

from payments.factory import get_gateway


def billing_now() -> datetime:
    """Real time with Stripe; the sandbox's movable clock otherwise, so that a demo moved forward
    with `sandbox_advance` renews, prorates, goes into grace and suspends on one timeline."""
    return get_gateway().now()
