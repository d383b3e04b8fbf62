"""`manage.py check --deploy`: production never takes payments on the sandbox by accident, even
with settings built some other way than config/settings.py (which already refuses to start)."""

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register


@register(Tags.security, deploy=True)
def gateway_check(
    *, app_configs: Sequence[AppConfig] | None, databases: Sequence[str] | None, **kwargs: Any
) -> list[CheckMessage]:
    choice = getattr(settings, "BILLING_GATEWAY", None)
    if choice not in ("stripe", "sandbox"):
        return [
            Error(
                f"BILLING_GATEWAY is {choice!r}.",
                hint="Set STRIPE_SECRET_KEY (BILLING_GATEWAY=stripe), or BILLING_GATEWAY=sandbox "
                "for a demo or staging site where no real money moves.",
                id="payments.E001",
            )
        ]
    if choice == "stripe" and not getattr(settings, "STRIPE_SECRET_KEY", ""):
        return [
            Error(
                "BILLING_GATEWAY is stripe but STRIPE_SECRET_KEY is empty.",
                hint="Set STRIPE_SECRET_KEY.",
                id="payments.E002",
            )
        ]
    if choice == "sandbox":
        return [
            Warning(
                "Payments use the sandbox gateway: no real money moves, and every page says so.",
                hint="Right for a demo or staging site only; set STRIPE_SECRET_KEY to take "
                "real payments.",
                id="payments.W001",
            )
        ]
    return []
