"""Run by tests/security/test_settings.py in a subprocess with production settings (DEBUG=0 and
its secrets in the environment): asks the app a few questions through Django's test client and
prints what it answered, as JSON, for the test to judge.

It writes only inside one transaction that it rolls back. The static files are collected into
PROBE_STATIC_ROOT first, as the Dockerfile's collectstatic does, so that pages render with the
production storage."""

import json
import os
import sys
from http.cookies import Morsel
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.test import Client  # noqa: E402

from accounts.models import User  # noqa: E402
from organizations.services import organization_create  # noqa: E402

PASSWORD = "probe-password-correct-horse-7"
HEADERS = (
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "Referrer-Policy",
    "X-Frame-Options",
    "Content-Security-Policy",
    "Cross-Origin-Opener-Policy",
    "Location",
    "Content-Type",
)


def _cookie(morsel: Morsel[str]) -> dict[str, Any]:
    return {
        "secure": bool(morsel["secure"]),
        "httponly": bool(morsel["httponly"]),
        "samesite": morsel["samesite"],
    }


def _answer(response: HttpResponse) -> dict[str, Any]:
    body = b"" if response.streaming else response.content
    return {
        "status": response.status_code,
        "headers": {name: response[name] for name in HEADERS if response.has_header(name)},
        "cookies": {name: _cookie(morsel) for name, morsel in response.cookies.items()},
        "body": body.decode(errors="replace")[:3000],
    }


def probe() -> dict[str, Any]:
    answers: dict[str, Any] = {
        "debug": settings.DEBUG,
        "settings": {
            name: getattr(settings, name)
            for name in (
                "SESSION_COOKIE_SECURE",
                "SESSION_COOKIE_HTTPONLY",
                "CSRF_COOKIE_SECURE",
                "SECURE_SSL_REDIRECT",
                "SECURE_HSTS_SECONDS",
                "SECURE_PROXY_SSL_HEADER",
            )
        },
    }
    # Behind the TLS proxy, as production runs: it says https in X-Forwarded-Proto.
    plain, secure = Client(), Client(headers={"X-Forwarded-Proto": "https"})
    answers["http_login"] = _answer(plain.get("/accounts/login/"))
    answers["http_healthz"] = _answer(plain.get("/healthz"))
    answers["login_page"] = _answer(secure.get("/accounts/login/"))
    user = User.objects.create_user(email="probe@example.test", password=PASSWORD)
    organization = organization_create(actor=user, name="Probe Co")
    answers["login"] = _answer(
        secure.post("/accounts/login/", {"username": user.email, "password": PASSWORD})
    )
    answers["overview"] = _answer(secure.get(f"/o/{organization.pk}/"))
    answers["missing"] = _answer(secure.get("/no/such/page/"))
    answers["admin_for_a_customer"] = _answer(secure.get("/admin/"))
    answers["api_without_token"] = _answer(secure.get("/api/models"))
    return answers


def main() -> None:
    settings.STATIC_ROOT = os.environ["PROBE_STATIC_ROOT"]
    call_command("collectstatic", "--noinput", verbosity=0)
    with transaction.atomic():
        answers = probe()
        transaction.set_rollback(True)
    json.dump(answers, sys.stdout)


if __name__ == "__main__":
    main()
