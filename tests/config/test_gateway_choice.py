"""Production never takes payments on the sandbox by accident (DESIGN.md, "Payments"): with DEBUG
off the process refuses to start unless STRIPE_SECRET_KEY is set or BILLING_GATEWAY=sandbox is
chosen explicitly, `check --deploy` refuses settings built without a gateway, and while the
sandbox is in use every page says "Sandbox: no real money"."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import Client, RequestFactory
from django.urls import reverse
from django.views.defaults import server_error

from credits.services import account_for, credits_purchase
from payments.factory import get_gateway
from payments.sandbox.gateway import SandboxGateway
from payments.stripe_gateway import StripeGateway
from tests.conftest import World, client_for
from tests.factories import UserFactory

ROOT = Path(__file__).resolve().parents[2]
RIBBON = "Sandbox: no real money"
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "x" * 20 + "-a-long-random-production-secret-key-value-123",
    "ALLOWED_HOSTS": "billing.example.com",
    "STRIPE_WEBHOOK_SECRET": "whsec_test",
}
CHOICES = {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "STRIPE_SECRET_KEY", "BILLING_GATEWAY"}


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in CHOICES}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_production_refuses_to_start_without_a_stripe_key_and_says_why() -> None:
    result = _manage("check", **PRODUCTION)
    assert result.returncode != 0
    assert "DEBUG is off and STRIPE_SECRET_KEY is not set" in result.stderr
    assert "BILLING_GATEWAY=sandbox" in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BILLING_GATEWAY": "stripe"}, "BILLING_GATEWAY=stripe: set STRIPE_SECRET_KEY."),
        ({"BILLING_GATEWAY": "paypal"}, "BILLING_GATEWAY='paypal': use stripe or sandbox"),
    ],
)
def test_it_refuses_a_gateway_it_cannot_use(env: dict[str, str], message: str) -> None:
    for debug in ("0", "1"):
        result = _manage("check", **{**PRODUCTION, "DEBUG": debug, **env})
        assert result.returncode != 0
        assert message in result.stderr


def test_an_explicit_sandbox_starts_and_the_deploy_check_names_it() -> None:
    result = _manage("check", "--deploy", **PRODUCTION, BILLING_GATEWAY="sandbox")
    assert result.returncode == 0, result.stderr
    assert "payments.W001" in result.stderr + result.stdout
    assert "no real money moves" in result.stderr + result.stdout


def test_a_stripe_key_passes_the_deploy_check_cleanly() -> None:
    result = _manage(
        "check", "--deploy", "--fail-level", "WARNING", **PRODUCTION, STRIPE_SECRET_KEY="sk_live_x"
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_the_deploy_check_fails_for_settings_built_without_a_gateway(settings: Any) -> None:
    """Settings made some other way than config/settings.py, which would refuse to load."""
    del settings.BILLING_GATEWAY
    with pytest.raises(SystemCheckError, match=r"payments\.E001"):
        call_command("check", "--deploy", verbosity=0)
    settings.BILLING_GATEWAY = "stripe"
    settings.STRIPE_SECRET_KEY = ""
    with pytest.raises(SystemCheckError, match=r"payments\.E002"):
        call_command("check", "--deploy", verbosity=0)


def test_the_docker_build_can_still_collect_the_static_files() -> None:
    """The Dockerfile's build-time collectstatic, with exactly the variables it sets."""
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    line = next(
        line
        for line in dockerfile.splitlines()
        if line.startswith("RUN ") and "collectstatic" in line
    )
    words = shlex.split(line.removeprefix("RUN "))
    build_env = dict(word.split("=", 1) for word in words if re.match(r"^[A-Z_]+=", word))
    assert build_env["DEBUG"] == "0"
    result = _manage("collectstatic", "--noinput", "--dry-run", **build_env)
    assert result.returncode == 0, result.stderr


def test_get_gateway_follows_billing_gateway(settings: Any) -> None:
    settings.STRIPE_SECRET_KEY = "sk_test_chosen"
    settings.BILLING_GATEWAY = "sandbox"
    assert isinstance(get_gateway(), SandboxGateway)
    settings.BILLING_GATEWAY = "stripe"
    assert isinstance(get_gateway(), StripeGateway)


# The ribbon


def _pages(world: World) -> dict[str, str]:
    """What a visitor sees: log-in, the dashboard, the admin, errors; the HTML of each."""
    staff = UserFactory(email="staff@kilo.test", is_staff=True, is_superuser=True)
    request = RequestFactory().get("/")
    pages = {
        "login": client_for(None).get(reverse("login")),
        "dashboard": client_for(world.owner).get(reverse("org_overview", args=[world.org.pk])),
        "members": client_for(world.member).get(reverse("org_members", args=[world.org.pk])),
        "404": client_for(world.owner).get("/o/00000000-0000-0000-0000-000000000000/"),
        "500": server_error(request),
        "admin login": client_for(None).get(reverse("admin:login")),
        "admin": client_for(staff).get(reverse("admin:index")),
    }
    return {name: response.content.decode() for name, response in pages.items()}


def test_every_page_says_sandbox_while_the_sandbox_is_in_use(world: World, settings: Any) -> None:
    settings.BILLING_GATEWAY = "sandbox"
    pages = _pages(world)
    for name, html in pages.items():
        assert RIBBON in html, name
    assert 'class="sandbox-ribbon"' in pages["dashboard"]
    started = credits_purchase(
        actor=world.outsider,
        account=account_for(user=world.outsider),
        amount_cents=5_000,
        idempotency_key="ribbon-checkout",
        success_url="http://testserver/",
        cancel_url="http://testserver/",
    )
    assert started.checkout_url
    hosted = Client().get("/" + started.checkout_url.split("://", 1)[1].split("/", 1)[1])
    assert hosted.status_code == 200
    assert RIBBON in hosted.content.decode()


def test_no_page_says_sandbox_with_stripe(world: World, settings: Any) -> None:
    settings.BILLING_GATEWAY = "stripe"
    settings.STRIPE_SECRET_KEY = "sk_test_no_network_needed"
    for name, html in _pages(world).items():
        assert RIBBON not in html, name
        assert "sandbox-ribbon" not in html, name
