"""Security settings as production runs them, and the content security policy as the pages
actually meet it. (`check --deploy` and the refusal to start without secrets are in
tests/config/test_health.py; the log-in limiter's basic case and the short-password case
in tests/accounts.)"""

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from django.contrib import admin
from django.http import HttpResponse
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from credits.ledger import usage_debit
from credits.models import ApiToken, Purchase
from credits.services import account_for, credits_purchase
from invoices.models import Invoice
from organizations.models import AuditEvent, Invitation, Organization
from organizations.services import hash_token
from tests.conftest import client_for
from tests.credits.conftest import fund
from tests.factories import PASSWORD, UserFactory
from tests.faults.conftest import database_url_for_subprocesses
from tests.security.conftest import Tenants, closed_organization_of
from tests.security.test_isolation import (
    ORG_ROUTES,
    PAGES,
    PERSONAL_ROUTES,
    Route,
    undone,
    url,
)

ROOT = Path(__file__).resolve().parents[2]


# Production settings, through the app itself


@pytest.fixture(scope="module")
def production(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What the app answers with DEBUG off and its secrets set (tests/security/prod_probe.py)."""
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY"}},
        "DEBUG": "0",
        "SECRET_KEY": "probe-" + "k" * 60,
        "ALLOWED_HOSTS": "testserver,billing.example.com",
        "STRIPE_WEBHOOK_SECRET": "whsec_probe",
        # The probe buys nothing; without a Stripe key the sandbox must be chosen explicitly.
        "STRIPE_SECRET_KEY": "",
        "BILLING_GATEWAY": "sandbox",
        "SITE_URL": "https://billing.example.com",
        "DATABASE_URL": database_url_for_subprocesses(),
        "EMAIL_URL": "dummymail://",
        "PROBE_STATIC_ROOT": str(tmp_path_factory.mktemp("static")),
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.security.prod_probe"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answers: dict[str, Any] = json.loads(done.stdout)
    assert answers["debug"] is False
    return answers


def test_it_redirects_plain_http_to_https_except_the_health_check(
    production: dict[str, Any],
) -> None:
    login = production["http_login"]
    assert login["status"] == 301
    assert login["headers"]["Location"] == "https://testserver/accounts/login/"
    assert production["http_healthz"]["status"] in (200, 503)  # load balancers probe plain http


@pytest.mark.parametrize("page", ["login_page", "overview", "missing", "api_without_token"])
def test_it_sends_the_security_headers(production: dict[str, Any], page: str) -> None:
    headers = production[page]["headers"]
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    directives = [part.split(" ", 1) for part in headers["Content-Security-Policy"].split("; ")]
    policy = dict(directives)
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["object-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["base-uri"] == "'self'"


def test_it_sets_cookies_secure_and_the_session_cookie_http_only(
    production: dict[str, Any],
) -> None:
    assert production["login_page"]["cookies"]["csrftoken"]["secure"]
    login = production["login"]
    assert login["status"] == 302
    session = login["cookies"]["sessionid"]
    assert session == {"secure": True, "httponly": True, "samesite": "Lax"}
    assert production["overview"]["status"] == 200
    assert "Probe Co" in production["overview"]["body"]


def test_it_shows_no_debug_page_in_production(production: dict[str, Any]) -> None:
    missing = production["missing"]
    assert missing["status"] == 404
    assert "URLconf" not in missing["body"]
    assert "Traceback" not in missing["body"]
    assert missing["headers"]["Content-Type"].startswith("text/html")


def test_it_keeps_customers_out_of_the_admin_in_production(production: dict[str, Any]) -> None:
    answer = production["admin_for_a_customer"]
    assert answer["status"] == 302
    assert answer["headers"]["Location"].startswith("/admin/login/")


# The content security policy, as the pages meet it


class _PolicyBreaches(HTMLParser):
    """What `script-src 'self'; style-src 'self'` refuses: inline scripts, inline event
    handlers, javascript: URLs, style attributes and <style> blocks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.breaches: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script" and not found.get("src"):
            self.breaches.append("<script> without src")
        if tag == "style":
            self.breaches.append("<style> block")
        for name, value in attrs:
            if name.startswith("on"):
                self.breaches.append(f"<{tag} {name}=…>")
            if name == "style":
                self.breaches.append(f"<{tag} style={value!r}>")
            if name in {"href", "src", "action", "formaction"} and (
                value or ""
            ).strip().lower().startswith("javascript:"):
                self.breaches.append(f"<{tag} {name}={value!r}>")


def breaches_of(response: HttpResponse) -> list[str]:
    parser = _PolicyBreaches()
    parser.feed(response.content.decode(errors="replace"))
    return parser.breaches


def _plain_pages(routes: list[Route]) -> list[str]:
    return [
        route.name
        for route in routes
        if PAGES[route.table_key].method == "GET" and PAGES[route.table_key].ok == 200
    ]


ORG_PAGES = _plain_pages(ORG_ROUTES)
PERSONAL_PAGES = _plain_pages(PERSONAL_ROUTES)
# Pages outside the sweep, and the answer each gives.
SPECIAL_PAGES = {
    "login": 200,
    "signup": 200,
    "password_reset": 200,
    "password_reset_done": 200,
    "password_change": 200,
    "login with errors": 200,
    "signup with errors": 200,
    "404": 404,
    "403": 403,
    "invitation": 200,
    "invitation unusable": 404,
    "sandbox invoice": 200,
    "sandbox payment method": 200,
    "sandbox checkout": 200,
    "grace banner": 200,
    "suspension page": 403,
    "suspended billing": 200,
}


@dataclass(frozen=True)
class Rendered:
    status: int
    html: bool
    breaches: list[str]


def _personal_usage(user: User) -> int:
    account = account_for(user=user)
    fund(account, 100_000, key="csp-personal-fund")
    return usage_debit(
        account_id=account.pk,
        user_id=user.pk,
        cost=77,
        request_id="csp-personal-1",
        provider="anthropic",
        model="claude-sonnet-4",
        input_tokens=1,
        output_tokens=1,
    ).entry_id


@pytest.fixture(scope="module")
def rendered(tenants: Tenants, django_db_blocker: Any) -> dict[str, Rendered]:
    """Every page rendered once: the organization's as its owner, the personal ones as the
    member, and the special ones; all of it undone afterwards."""
    world = tenants.world
    with django_db_blocker.unblock(), undone():
        personal = {
            "purchase_id": _personal_purchase(world.member),
            "token_id": ApiToken.objects.get(user=world.member).pk,
            "closed_id": closed_organization_of(world.member, name="Initech").pk,
            "entry_id": _personal_usage(world.member),
        }
        owner, member = client_for(world.owner), client_for(world.member)
        pages = {name: owner.get(_address(name, tenants.acme, None)) for name in ORG_PAGES}
        pages.update((name, member.get(_address(name, None, personal))) for name in PERSONAL_PAGES)
        pages.update(_special_pages(tenants))
        return {
            name: Rendered(
                status=response.status_code,
                html=not response.streaming and response["Content-Type"].startswith("text/html"),
                breaches=breaches_of(response) if not response.streaming else [],
            )
            for name, response in pages.items()
        }


def _address(name: str, tenant: Any, objects: dict[str, Any] | None) -> str:
    route = next(route for route in ORG_ROUTES + PERSONAL_ROUTES if route.name == name)
    return url(route, tenant, objects)


def _personal_purchase(user: User) -> int:
    return Purchase.objects.create(
        account=account_for(user=user),
        amount_cents=2_000,
        idempotency_key=f"csp-{user.pk}",
        created_by=user,
    ).pk


def _page_params() -> list[Any]:
    return [*ORG_PAGES, *PERSONAL_PAGES, *SPECIAL_PAGES]


@pytest.mark.parametrize("page", _page_params())
def test_it_serves_pages_that_pass_the_content_security_policy(
    rendered: dict[str, Rendered], page: str
) -> None:
    answer = rendered[page]
    assert answer.status == SPECIAL_PAGES.get(page, 200)
    if page in SPECIAL_PAGES or answer.html:
        assert answer.html
    assert not answer.breaches


def test_it_checks_enough_pages(rendered: dict[str, Rendered]) -> None:
    html = [name for name, answer in rendered.items() if answer.html]
    assert len(html) >= 40, sorted(html)


def _special_pages(tenants: Tenants) -> dict[str, HttpResponse]:
    """Pages outside the sweep: log-in and sign-up, the invitation, errors, the sandbox's
    hosted pages, the lifecycle banners and the suspension page."""
    world, org = tenants.world, tenants.acme.org
    anonymous, owner, member = client_for(None), client_for(world.owner), client_for(world.member)
    pages = {
        name: anonymous.get(reverse(name))
        for name in ("login", "signup", "password_reset", "password_reset_done")
    }
    pages["password_change"] = owner.get(reverse("password_change"))
    pages["login with errors"] = anonymous.post(reverse("login"), {"username": "x@y.z"})
    pages["signup with errors"] = anonymous.post(reverse("signup"), {"email": "bad"})
    pages["404"] = owner.get("/o/00000000-0000-0000-0000-000000000000/")
    pages["403"] = member.get(reverse("org_settings", args=[org.pk]))
    invitation = Invitation.objects.get(pk=tenants.acme.objects["invitation_id"])
    Invitation.objects.filter(pk=invitation.pk).update(token_hash=hash_token("csp-token"))
    pages["invitation"] = anonymous.get(reverse("invitation_accept", args=["csp-token"]))
    pages["invitation unusable"] = anonymous.get(reverse("invitation_accept", args=["nope"]))

    invoice = Invoice.objects.filter(billing_profile__organization=org).first()
    assert invoice is not None
    pages["sandbox invoice"] = anonymous.get(_path(invoice.hosted_invoice_url))
    to_card_page = owner.get(reverse("org_payment_method", args=[org.pk]))
    pages["sandbox payment method"] = anonymous.get(_path(to_card_page["Location"]))
    started = credits_purchase(
        actor=world.outsider,
        account=account_for(user=world.outsider),
        amount_cents=2_000,
        idempotency_key="csp-checkout",
        success_url="http://testserver/",
        cancel_url="http://testserver/",
    )
    assert started.checkout_url, "no saved card: the purchase goes to Checkout"
    pages["sandbox checkout"] = anonymous.get(_path(started.checkout_url))

    Organization.objects.filter(pk=org.pk).update(
        billing_state="grace", grace_ends_at=timezone.now() + timedelta(days=3)
    )
    pages["grace banner"] = owner.get(reverse("org_overview", args=[org.pk]))
    assert "Payment failed" in pages["grace banner"].content.decode()
    Organization.objects.filter(pk=org.pk).update(
        billing_state="suspended", suspended_at=timezone.now()
    )
    pages["suspension page"] = member.get(reverse("org_overview", args=[org.pk]))
    assert "suspended" in pages["suspension page"].content.decode().lower()
    pages["suspended billing"] = owner.get(reverse("org_pay_now", args=[org.pk]))
    return pages


def _path(address: str) -> str:
    """The path of a link the app made with SITE_URL, for the test client."""
    return "/" + address.split("://", 1)[-1].split("/", 1)[1]


def test_it_tells_htmx_not_to_inject_styles(tenants: Tenants, db: None) -> None:
    response = client_for(tenants.world.owner).get(
        reverse("org_seats_add", args=[tenants.acme.org.pk])
    )
    page = response.content.decode()
    assert "htmx" in page
    assert '"includeIndicatorStyles": false' in page.replace("'", '"').replace(":false", ": false")


# Passwords


@pytest.mark.parametrize(
    "password",
    [
        "password",  # one of the common passwords
        "80142937651",  # all digits
        "newcomer@example.test",  # the email itself
    ],
)
def test_it_refuses_weak_passwords_at_sign_up(db: None, password: str) -> None:
    response = client_for(None).post(
        reverse("signup"),
        {
            "email": "newcomer@example.test",
            "name": "Newcomer",
            "password1": password,
            "password2": password,
        },
    )
    assert response.status_code == 200
    assert response.context["form"].errors["password2"]
    assert not User.objects.filter(email="newcomer@example.test").exists()


def test_it_refuses_a_weak_new_password(db: None) -> None:
    user = UserFactory()
    response = client_for(user).post(
        reverse("password_change"),
        {"old_password": PASSWORD, "new_password1": "password", "new_password2": "password"},
    )
    assert response.status_code == 200
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


# Log-in limits


def test_it_limits_failed_staff_logins_at_the_admin_too(db: None, settings: Any) -> None:
    settings.LOGIN_ATTEMPTS_LIMIT = 3
    staff = UserFactory(email="staff@example.test", is_staff=True, is_superuser=True)
    client = client_for(None)
    for _ in range(3):
        client.post(reverse("admin:login"), {"username": staff.email, "password": "guess"})
    response = client.post(
        reverse("admin:login") + "?next=/admin/", {"username": staff.email, "password": PASSWORD}
    )
    assert "_auth_user_id" not in client.session
    assert response.status_code == 200


def test_it_limits_each_address_separately_and_ignores_forwarded_for(
    db: None, settings: Any
) -> None:
    """The limiter keys on the connection's address, so a client cannot reset it by sending a
    different X-Forwarded-For each time."""
    settings.LOGIN_ATTEMPTS_LIMIT = 2
    user = UserFactory(email="target@example.test")
    attacker = Client(REMOTE_ADDR="203.0.113.9")
    for n in range(3):
        attacker.post(
            reverse("login"),
            {"username": user.email, "password": "guess"},
            headers={"X-Forwarded-For": f"198.51.100.{n}"},
        )
    refused = attacker.post(
        reverse("login"),
        {"username": user.email, "password": PASSWORD},
        headers={"X-Forwarded-For": "198.51.100.77"},
    )
    assert "Too many failed log-in attempts" in refused.content.decode()
    assert "_auth_user_id" not in attacker.session
    # The account's owner, from another address, is not locked out by the attacker.
    owner = Client(REMOTE_ADDR="192.0.2.1")
    assert (
        owner.post(reverse("login"), {"username": user.email, "password": PASSWORD}).status_code
        == 302
    )


# API tokens


def test_it_shows_a_new_api_token_once_and_keeps_only_its_hash(db: None) -> None:
    user = UserFactory()
    client = client_for(user)
    created = client.post(reverse("personal_tokens"), {"name": "laptop"})
    raw = created.context["new_token"]
    assert raw.startswith("kb_")
    assert len(raw) > 40
    assert raw in created.content.decode()
    assert raw not in client.get(reverse("personal_tokens")).content.decode()
    stored = ApiToken.objects.get(user=user)
    assert raw not in json.dumps(list(ApiToken.objects.filter(pk=stored.pk).values()), default=str)
    assert stored.prefix == raw[:10]
    assert raw not in json.dumps(list(AuditEvent.objects.values()), default=str)
    # The stored hash is what authenticates, and nothing else does.
    assert Client(headers={"Authorization": f"Bearer {raw}"}).get("/api/profile").status_code == 200
    forged = Client(headers={"Authorization": f"Bearer {stored.token_hash}"})
    assert forged.get("/api/profile").status_code == 401


# The admin


def _admin_pages() -> list[str]:
    pages = [reverse("admin:index")]
    for model in admin.site._registry:
        meta = model._meta
        pages.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
    return pages


def test_it_requires_staff_for_every_admin_page(db: None) -> None:
    pages = _admin_pages()
    assert len(pages) > 10
    customer = UserFactory(email="owner@customer.test")
    staff = UserFactory(email="staff@kilo.test", is_staff=True, is_superuser=True)
    for page in pages:
        for visitor in (client_for(None), client_for(customer)):
            response = visitor.get(page)
            assert response.status_code == 302, page
            assert response["Location"].startswith(reverse("admin:login")), page
        assert client_for(staff).get(page).status_code == 200, page


def test_it_gives_staff_without_permissions_nothing(db: None) -> None:
    """is_staff alone opens the admin's door, not its models."""
    clerk = UserFactory(email="clerk@kilo.test", is_staff=True)
    client = client_for(clerk)
    for page in _admin_pages()[1:]:
        assert client.get(page).status_code == 403, page
