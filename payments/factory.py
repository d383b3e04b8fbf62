"""Which gateway this process talks to: the one place that knows both implementations."""

from collections.abc import Callable
from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from payments.gateway import BillingGateway
from payments.sandbox.gateway import SandboxGateway
from payments.stripe_gateway import StripeGateway

# A seam for the tests: when set, every gateway handed out is passed through it first
# (tests/conftest.py wraps it so that any call made inside a database transaction fails).
wrap: Callable[[BillingGateway], BillingGateway] | None = None


@cache
def _stripe_gateway(secret_key: str) -> BillingGateway:
    return StripeGateway(api_key=secret_key)


def _chosen() -> BillingGateway:
    choice = settings.BILLING_GATEWAY
    if choice == "stripe":
        if not settings.STRIPE_SECRET_KEY:
            raise ImproperlyConfigured("BILLING_GATEWAY=stripe: set STRIPE_SECRET_KEY.")
        return _stripe_gateway(settings.STRIPE_SECRET_KEY)
    if choice == "sandbox":
        return SandboxGateway()
    raise ImproperlyConfigured(f"BILLING_GATEWAY={choice!r}: use stripe or sandbox.")


def get_gateway() -> BillingGateway:
    """The gateway BILLING_GATEWAY names: "stripe" (with STRIPE_SECRET_KEY) or "sandbox". The
    settings choose it once (config/settings.py); an unknown name is refused, never the sandbox."""
    gateway = _chosen()
    return wrap(gateway) if wrap is not None else gateway
