import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db.utils import OperationalError
from django.urls import reverse

from tests.conftest import client_for

ROOT = Path(__file__).resolve().parents[2]


def test_it_reports_both_ok(db: None) -> None:
    response = client_for(None).get(reverse("healthz"))
    assert response.status_code == 200
    assert json.loads(response.content) == {"database": "ok", "redis": "ok"}


def test_it_names_redis_when_down(db: None, settings) -> None:  # type: ignore[no-untyped-def]
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = client_for(None).get(reverse("healthz"))
    assert response.status_code == 503
    assert json.loads(response.content) == {"database": "ok", "redis": "down"}


def test_it_names_the_database_when_down(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise OperationalError("connection refused")

    with monkeypatch.context() as patch:
        patch.setattr("config.health.connection.cursor", broken)
        response = client_for(None).get(reverse("healthz"))
    assert response.status_code == 503
    assert json.loads(response.content) == {"database": "down", "redis": "ok"}


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "STRIPE_SECRET_KEY", "BILLING_GATEWAY"}
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_production_refuses_to_start_without_its_secrets() -> None:
    result = _manage("check", DEBUG="0")
    assert result.returncode != 0
    assert "set SECRET_KEY and ALLOWED_HOSTS" in result.stderr


def test_production_settings_pass_the_deploy_check() -> None:
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="0",
        SECRET_KEY="x" * 20 + "-a-long-random-production-secret-key-value-123",
        ALLOWED_HOSTS="billing.example.com",
        STRIPE_WEBHOOK_SECRET="whsec_test",
        STRIPE_SECRET_KEY="sk_live_test",
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
