"""The tenant-isolation sweep: every URL pattern of the project, read from the resolver, asked
by every persona with Acme's ids and with Globex's.

- outsiders (Acme's people at Globex's URLs, Globex's owner at Acme's) → 404, nothing changed;
- each role at its own organization → the permission matrix: allowed (the page's normal
  answer) or 403; no page shows anything of the neighbour;
- Acme's organization with Globex's object ids (membership, invitation, purchase, invoice) → 404;
- anonymous → the log-in page;
- every POST without a CSRF token → 403, nothing changed.

A URL name missing from PAGES or EXCLUDED fails `test_it_knows_every_url`: a new page needs a
line saying what it takes to open it."""

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import transaction
from django.http import HttpResponse, StreamingHttpResponse
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from accounts.models import User
from credits.ledger import usage_debit
from credits.models import ApiToken, LedgerEntry, Purchase
from credits.services import account_for, api_token_create
from invoices.models import Invoice
from organizations.models import Membership, Organization
from organizations.roles import Permission, Role, allows
from tests.conftest import atomic_as_test_case, client_for
from tests.credits.conftest import fund
from tests.factories import UserFactory
from tests.security.conftest import ROLES, Tenant, Tenants, closed_organization_of, state_of

P = Permission


@dataclass(frozen=True)
class Page:
    """What it takes to open a page, and how to ask it.

    `permission` None: a personal page (any logged-in user, only their own objects).
    `method`/`ok`: the request a permitted role makes (an empty POST for POST-only actions) and
    the answer it gets. `attack`: for pages with a POST form, a body that would change the
    tenant if the door were open ("{org_name}" is replaced by the target's name)."""

    permission: Permission | None
    ok: int = 200
    method: str = "GET"
    attack: dict[str, str] | None = None


def _key() -> str:
    return str(uuid.uuid4())


PAGES: dict[str, Page] = {
    # Organization pages (/o/<org_id>/…)
    "org_overview": Page(P.VIEW_ORGANIZATION),
    "org_usage": Page(P.VIEW_ORGANIZATION),
    # Members see their own requests and receipts (the entry is the member's), the rest all.
    "org_usage_requests": Page(P.VIEW_ORGANIZATION),
    "org_usage_receipt": Page(P.VIEW_ORGANIZATION),
    "org_member_budgets": Page(P.MANAGE_SETTINGS),
    "org_usage_csv": Page(P.VIEW_ORGANIZATION),
    "org_usage_visibility": Page(
        P.MANAGE_SETTINGS, ok=302, method="POST", attack={"members_see_totals": "on"}
    ),
    "org_members": Page(P.VIEW_ORGANIZATION),
    "org_invite": Page(
        P.INVITE_MEMBERS,
        ok=400,  # the empty form, refused after the door
        method="POST",
        attack={"email": "intruder@evil.test", "role": Role.MEMBER},
    ),
    "org_member_role": Page(P.MANAGE_TEAM, ok=302, method="POST", attack={"role": Role.ADMIN}),
    "org_member_remove": Page(P.MANAGE_TEAM, attack={}),
    "org_invitation_resend": Page(P.INVITE_MEMBERS, ok=302, method="POST", attack={}),
    "org_invitation_revoke": Page(P.INVITE_MEMBERS, ok=302, method="POST", attack={}),
    "org_leave": Page(P.VIEW_ORGANIZATION, attack={}),
    "org_settings": Page(P.MANAGE_SETTINGS, attack={"name": "Pwned"}),
    "org_delete": Page(P.MANAGE_OWNERS, attack={"confirm_name": "{org_name}"}),
    "org_audit": Page(P.MANAGE_SETTINGS),
    "org_credits": Page(P.MANAGE_CREDITS),
    "org_buy": Page(P.MANAGE_CREDITS, ok=302, attack={"preset": "50"}),
    "org_confirm": Page(P.MANAGE_CREDITS, ok=302, attack={"amount_cents": "5000", "key": _key()}),
    "org_purchase": Page(P.MANAGE_CREDITS),
    "org_auto_topup": Page(
        P.MANAGE_CREDITS, ok=302, attack={"enabled": "on", "threshold": "100", "amount": "500"}
    ),
    "org_low_balance": Page(
        P.MANAGE_CREDITS, ok=302, attack={"threshold": "5", "recipients": "spy@evil.test"}
    ),
    "org_daily_limit": Page(P.MANAGE_SETTINGS, ok=302, method="POST", attack={"limit": "0.01"}),
    "org_seats": Page(P.MANAGE_SEATS),
    "org_seats_buy": Page(P.MANAGE_SEATS, attack={"plan": "teams", "seats": "3", "key": _key()}),
    "org_seats_add": Page(P.MANAGE_SEATS, attack={"seats": "1", "key": _key()}),
    "org_seats_remove": Page(P.MANAGE_SEATS, attack={"seats": "1", "key": _key()}),
    "org_seats_cancel": Page(P.MANAGE_SEATS, attack={}),
    "org_seats_resume": Page(P.MANAGE_SEATS, attack={}),
    "org_invoices": Page(P.MANAGE_BILLING),
    "org_invoices_csv": Page(P.MANAGE_BILLING),
    "org_invoice": Page(P.MANAGE_BILLING),
    "org_invoice_pdf": Page(P.MANAGE_BILLING, ok=302),
    "org_billing": Page(
        P.MANAGE_BILLING, attack={"company_name": "Pwned Inc", "billing_email": "spy@evil.test"}
    ),
    "org_payment_method": Page(P.MANAGE_BILLING, ok=302),
    "org_pay_now": Page(P.MANAGE_BILLING, attack={"confirm": "on"}),
    "org_account_status": Page(P.MANAGE_BILLING),
    # Personal pages: the caller's own profile, credits, tokens and usage
    "home": Page(None, ok=302),
    "personal_profile": Page(None),
    "profile_switch": Page(None, ok=302, method="POST", attack={"profile": "personal"}),
    "org_create": Page(None, attack={"name": "New Co"}),
    "personal_credits": Page(None),
    "personal_buy": Page(None, ok=302, attack={"preset": "20"}),
    "personal_confirm": Page(None, ok=302, attack={"amount_cents": "2000", "key": _key()}),
    "personal_purchase": Page(None),
    "personal_auto_topup": Page(
        None, ok=302, attack={"enabled": "on", "threshold": "10", "amount": "50"}
    ),
    "personal_low_balance": Page(None, ok=302, attack={"threshold": "5", "recipients": ""}),
    "personal_tokens": Page(None, attack={"name": "sneaky"}),
    "personal_token_revoke": Page(None, ok=302, method="POST", attack={}),
    "personal_usage": Page(None),
    "personal_usage_requests": Page(None),
    "personal_usage_receipt": Page(None),
    "personal_usage_csv": Page(None),
    "personal_invoices": Page(None),
    "personal_closed_organization": Page(None),
}

AUTH_PAGES = "log-in, sign-up and password pages: no tenant data (tests/accounts)"
SANDBOX = (
    "the sandbox provider's hosted pages, addressed by unguessable ids as Stripe's are "
    "(tests/payments/test_sandbox.py)"
)
EXCLUDED: dict[str, str] = {
    "admin:*": "the Django admin: staff only (test_settings.py checks that it requires staff)",
    "api:*": "the token-authenticated API: test_it_keeps_api_tokens_to_their_organization below "
    "and test_api_fuzz.py",
    "healthz": "the public health probe: no tenant data",
    "stripe_webhook": "signed by the provider instead of a session (tests/payments/test_webhooks)",
    "invitation_accept": "a capability link whose token is the key (test_invitations.py)",
    **dict.fromkeys(
        (
            "signup",
            "login",
            "logout",
            "password_change",
            "password_change_done",
            "password_reset",
            "password_reset_done",
            "password_reset_confirm",
            "password_reset_complete",
        ),
        AUTH_PAGES,
    ),
    **dict.fromkeys(
        (
            "sandbox_checkout",
            "sandbox_payment_method",
            "sandbox_portal",
            "sandbox_invoice",
            "sandbox_invoice_pdf",
            "sandbox_authenticate",
        ),
        SANDBOX,
    ),
}

# URL keywords that name an organization's objects, and the personal ones.
ORG_OBJECTS = {"membership_id", "invitation_id", "purchase_id", "invoice_id", "entry_id"}
PERSONAL_OBJECTS = {"purchase_id", "token_id", "closed_id", "entry_id"}


@dataclass(frozen=True)
class Route:
    name: str  # "namespace:name" when namespaced
    keywords: tuple[str, ...]
    pattern: str = field(compare=False)

    @property
    def table_key(self) -> str:
        namespace = self.name.partition(":")[0] if ":" in self.name else ""
        return f"{namespace}:*" if f"{namespace}:*" in EXCLUDED else self.name


def _walk(
    patterns: list[Any], prefix: str = "", namespace: str = "", keywords: tuple[str, ...] = ()
) -> Iterator[Route]:
    for pattern in patterns:
        own = tuple(_keywords(pattern))
        text = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            inner = ":".join(part for part in (namespace, pattern.namespace or "") if part)
            yield from _walk(pattern.url_patterns, text, inner, keywords + own)
        elif isinstance(pattern, URLPattern):
            name = pattern.name or f"<unnamed {text}>"
            yield Route(f"{namespace}:{name}" if namespace else name, keywords + own, text)


def _keywords(pattern: URLPattern | URLResolver) -> list[str]:
    converters = getattr(pattern.pattern, "converters", None)
    if converters is not None:
        return list(converters)
    return list(pattern.pattern.regex.groupindex)


ROUTES = list(dict.fromkeys(_walk(get_resolver().url_patterns)))
SWEPT = [route for route in ROUTES if route.table_key in PAGES]
ORG_ROUTES = [route for route in SWEPT if "org_id" in route.keywords]
PERSONAL_ROUTES = [route for route in SWEPT if "org_id" not in route.keywords]
OBJECT_ROUTES = [route for route in ORG_ROUTES if set(route.keywords) & ORG_OBJECTS]
PERSONAL_OBJECT_ROUTES = [r for r in PERSONAL_ROUTES if set(r.keywords) & PERSONAL_OBJECTS]


def _ids(routes: list[Route]) -> list[str]:
    return [route.name for route in routes]


def url(route: Route, tenant: Tenant | None, objects: dict[str, Any] | None = None) -> str:
    objects = objects if objects is not None else (tenant.objects if tenant else {})
    kwargs: dict[str, object] = {}
    for keyword in route.keywords:
        if keyword == "org_id":
            assert tenant is not None
            kwargs[keyword] = tenant.org.pk
        else:
            kwargs[keyword] = objects[keyword]
    return reverse(route.name, kwargs=kwargs)


def attack_body(page: Page, org: Organization) -> dict[str, str]:
    assert page.attack is not None
    return {key: value.replace("{org_name}", org.name) for key, value in page.attack.items()}


def text_of(response: HttpResponse | StreamingHttpResponse) -> str:
    if isinstance(response, StreamingHttpResponse):
        return b"".join(response.streaming_content).decode()  # type: ignore[arg-type]
    return response.content.decode(errors="replace")


def ask(client: Client, route: Route, address: str) -> HttpResponse:
    page = PAGES[route.table_key]
    if page.method == "POST":
        return client.post(address, {})
    return client.get(address)


# The table itself


def test_it_knows_every_url() -> None:
    unknown = [
        f"{route.name} ({route.pattern})"
        for route in ROUTES
        if route.table_key not in PAGES and route.table_key not in EXCLUDED
    ]
    assert not unknown, (
        "New URLs: add each to PAGES in tests/security/test_isolation.py with the permission it "
        f"needs, or to EXCLUDED with the reason: {unknown}"
    )
    assert not set(PAGES) & set(EXCLUDED)


def test_it_can_fill_every_url_keyword() -> None:
    for route in SWEPT:
        known = {"org_id", *ORG_OBJECTS} if "org_id" in route.keywords else PERSONAL_OBJECTS
        missing = set(route.keywords) - known
        assert not missing, f"{route.name}: teach the sweep which object {missing} names"


def test_it_sweeps_the_pages_that_matter() -> None:
    """A guard against a resolver walk that silently finds nothing."""
    swept = {route.name for route in SWEPT}
    assert {"org_overview", "org_invoice", "org_purchase", "personal_tokens"} <= swept
    assert len(ORG_ROUTES) >= 30


# Organization pages


@contextmanager
def undone() -> Iterator[None]:
    """Run a request in a savepoint that is rolled back, so the next persona finds the tenant as
    the fixture made it (e.g. the invitation the owner just revoked is open again)."""
    with atomic_as_test_case():
        yield
        transaction.set_rollback(True)


@pytest.mark.parametrize("route", ORG_ROUTES, ids=_ids(ORG_ROUTES))
def test_it_answers_each_role_by_the_matrix(tenants: Tenants, db: None, route: Route) -> None:
    page = PAGES[route.table_key]
    assert page.permission is not None
    acme, world = tenants.acme, tenants.world
    wrong = []
    for role in ROLES:
        with undone():
            response = ask(client_for(world.person(role)), route, url(route, acme))
        expected = page.ok if allows(role, page.permission) else 403
        if response.status_code != expected:
            wrong.append(f"{role}: {response.status_code}, expected {expected}")
        elif response.status_code == 200:
            leaked = [m for m in tenants.globex.markers if m in text_of(response)]
            if leaked:
                wrong.append(f"{role}: shows the neighbour's {leaked}")
        elif response.status_code == 302 and response["Location"].startswith(reverse("login")):
            wrong.append(f"{role}: sent to log in")
    assert not wrong, wrong


@pytest.mark.parametrize("route", ORG_ROUTES, ids=_ids(ORG_ROUTES))
def test_it_hides_the_neighbours_pages_from_every_role(
    tenants: Tenants, db: None, route: Route
) -> None:
    page = PAGES[route.table_key]
    globex, world = tenants.globex, tenants.world
    before = state_of(globex.org)
    address = url(route, globex)
    # A POST-only action asked by GET is refused for its method (405) before anything else.
    expected = {"GET": 405 if page.method == "POST" else 404, "POST": 404}
    wrong = []
    for role in ROLES:
        client = client_for(world.person(role))
        answers = {"GET": client.get(address).status_code}
        if page.method == "POST" or page.attack is not None:
            body = attack_body(page, globex.org) if page.attack is not None else {}
            answers["POST"] = client.post(address, body).status_code
        wrong += [f"{role} {m}: {s}" for m, s in answers.items() if s != expected[m]]
    assert not wrong, wrong
    assert state_of(globex.org) == before


@pytest.mark.parametrize("route", ORG_ROUTES, ids=_ids(ORG_ROUTES))
def test_it_hides_our_pages_from_the_outsider(tenants: Tenants, db: None, route: Route) -> None:
    page = PAGES[route.table_key]
    acme = tenants.acme
    client = client_for(tenants.world.outsider)
    before = state_of(acme.org)
    response = ask(client, route, url(route, acme))
    assert response.status_code == 404
    if page.attack is not None:
        assert client.post(url(route, acme), attack_body(page, acme.org)).status_code == 404
    assert state_of(acme.org) == before


@pytest.mark.parametrize("route", OBJECT_ROUTES, ids=_ids(OBJECT_ROUTES))
def test_it_404s_for_the_neighbours_objects_in_our_url(
    tenants: Tenants, db: None, route: Route
) -> None:
    """Acme's owner, who may do everything at Acme, names one of Globex's objects under Acme's
    organization id."""
    page = PAGES[route.table_key]
    acme, globex = tenants.acme, tenants.globex
    mixed = {**acme.objects, **{k: globex.objects[k] for k in route.keywords if k in ORG_OBJECTS}}
    address = url(route, acme, mixed)
    client = client_for(tenants.world.owner)
    before = state_of(globex.org)
    assert ask(client, route, address).status_code == 404
    if page.attack is not None:
        assert client.post(address, attack_body(page, acme.org)).status_code == 404
    assert state_of(globex.org) == before


@pytest.mark.parametrize("route", SWEPT, ids=_ids(SWEPT))
def test_it_sends_anonymous_visitors_to_log_in(tenants: Tenants, db: None, route: Route) -> None:
    page = PAGES[route.table_key]
    acme = tenants.acme
    address = url(route, acme, acme.objects if "org_id" in route.keywords else tenants.personal)
    before = state_of(acme.org)
    for response in (client_for(None).get(address), client_for(None).post(address, {})):
        assert response.status_code == 302, route.name
        assert response["Location"].startswith(reverse("login") + "?next=")
    if page.attack is not None:
        response = client_for(None).post(address, attack_body(page, acme.org))
        assert response["Location"].startswith(reverse("login") + "?next=")
    assert state_of(acme.org) == before


# Personal pages


@pytest.fixture
def mine(tenants: Tenants, db: None) -> dict[str, Any]:
    """Acme's member's own personal purchase, token and usage, and an organization closed while
    they were its billing manager."""
    member = tenants.world.member
    purchase = Purchase.objects.create(
        account=account_for(user=member),
        amount_cents=2_000,
        idempotency_key="sweep-personal-member",
        created_by=member,
    )
    account = account_for(user=member)
    fund(account, 100_000, key="sweep-personal-member-fund")
    used = usage_debit(
        account_id=account.pk,
        user_id=member.pk,
        cost=77,
        request_id="sweep-personal-member-1",
        provider="anthropic",
        model="claude-sonnet-4",
        input_tokens=1,
        output_tokens=1,
    )
    return {
        "purchase_id": purchase.pk,
        "token_id": ApiToken.objects.get(user=member).pk,
        "closed_id": closed_organization_of(member, name="Initech").pk,
        "entry_id": used.entry_id,
    }


@pytest.mark.parametrize("route", PERSONAL_ROUTES, ids=_ids(PERSONAL_ROUTES))
def test_it_opens_personal_pages_to_their_owner(
    tenants: Tenants, mine: dict[str, Any], route: Route
) -> None:
    page = PAGES[route.table_key]
    response = ask(client_for(tenants.world.member), route, url(route, None, mine))
    assert response.status_code == page.ok
    if response.status_code == 200:
        shown = text_of(response)
        leaked = [m for m in tenants.globex.markers if m in shown]
        assert not leaked


@pytest.mark.parametrize("route", PERSONAL_OBJECT_ROUTES, ids=_ids(PERSONAL_OBJECT_ROUTES))
def test_it_404s_for_someone_elses_personal_objects(
    tenants: Tenants, mine: dict[str, Any], route: Route
) -> None:
    page = PAGES[route.table_key]
    address = url(route, None, tenants.personal)
    client = client_for(tenants.world.member)
    before = state_of(tenants.globex.org)
    assert ask(client, route, address).status_code == 404
    if page.attack is not None:
        assert client.post(address, page.attack).status_code == 404
    assert state_of(tenants.globex.org) == before
    assert ApiToken.objects.get(pk=tenants.personal["token_id"]).revoked_at is None


def test_it_refuses_to_switch_to_the_neighbours_profile(tenants: Tenants, db: None) -> None:
    member = tenants.world.member
    response = client_for(member).post(
        reverse("profile_switch"), {"profile": str(tenants.globex.org.pk)}
    )
    assert response.status_code == 404
    member.refresh_from_db()
    assert member.active_organization_id is None
    # The same request for the member's own organization is what the switcher is for.
    client_for(member).post(reverse("profile_switch"), {"profile": str(tenants.acme.org.pk)})
    member.refresh_from_db()
    assert member.active_organization_id == tenants.acme.org.pk


# CSRF: every route, logged in as the owner (who may do everything), without a token


CSRF_ROUTES = [
    route
    for route in ROUTES
    if route.table_key not in {"admin:*", "api:*", "stripe_webhook"}
    and not route.name.startswith("<unnamed")
]


def _any_url(route: Route, tenants: Tenants) -> str:
    acme = tenants.acme
    kwargs: dict[str, object] = {}
    for keyword in route.keywords:
        if keyword == "org_id":
            kwargs[keyword] = acme.org.pk
        elif keyword in acme.objects:
            kwargs[keyword] = acme.objects[keyword]
        elif keyword == "token_id":
            kwargs[keyword] = ApiToken.objects.get(user=tenants.world.owner).pk
        elif keyword in tenants.personal:
            kwargs[keyword] = tenants.personal[keyword]
        else:
            kwargs[keyword] = "x"  # capability tokens: the check comes before the view
    return reverse(route.name, kwargs=kwargs)


@pytest.mark.parametrize("route", CSRF_ROUTES, ids=_ids(CSRF_ROUTES))
def test_it_refuses_posts_without_a_csrf_token(tenants: Tenants, db: None, route: Route) -> None:
    owner = tenants.world.owner
    ApiToken.objects.get_or_create(
        user=owner, name="owner's", defaults={"prefix": "kb_x", "token_hash": "0" * 64}
    )
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    page = PAGES.get(route.table_key)
    body = attack_body(page, tenants.acme.org) if page and page.attack is not None else {}
    before = state_of(tenants.acme.org)
    response = client.post(_any_url(route, tenants), body)
    assert response.status_code == 403
    assert "CSRF verification failed" in response.content.decode()
    assert state_of(tenants.acme.org) == before


def test_it_accepts_the_same_post_with_the_token(tenants: Tenants, db: None) -> None:
    """The control for the test above: with the form's token the same post goes through."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(tenants.world.owner)
    address = reverse("org_settings", args=[tenants.acme.org.pk])
    client.get(address)
    token = client.cookies["csrftoken"].value
    response = client.post(address, {"name": "Acme Renamed", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert Organization.objects.get(pk=tenants.acme.org.pk).name == "Acme Renamed"


# Lists and exports


def test_it_keeps_the_neighbours_invoices_out_of_our_list_and_csv(
    tenants: Tenants, db: None
) -> None:
    ours = set(
        Invoice.objects.filter(billing_profile__organization=tenants.acme.org).values_list(
            "number", flat=True
        )
    )
    theirs = set(
        Invoice.objects.filter(billing_profile__organization=tenants.globex.org).values_list(
            "number", flat=True
        )
    )
    assert ours
    assert theirs
    client = client_for(tenants.world.billing)
    listed = client.get(reverse("org_invoices", args=[tenants.acme.org.pk])).content.decode()
    exported = text_of(client.get(reverse("org_invoices_csv", args=[tenants.acme.org.pk])))
    rows = [line.split(",")[0] for line in exported.strip().splitlines()[1:]]
    assert sorted(rows) == sorted(ours)
    assert all(number in listed for number in ours)
    assert not any(number in listed or number in exported for number in theirs)


def test_it_keeps_the_neighbours_usage_out_of_our_usage_csv(tenants: Tenants, db: None) -> None:
    both = _member_of_both(tenants)
    client = client_for(tenants.world.owner)
    exported = text_of(client.get(reverse("org_usage_csv", args=[tenants.acme.org.pk])))
    assert "acme-secret-project" in exported
    assert "acme-by-both" in exported
    assert "globex" not in exported
    mine = text_of(client_for(both).get(reverse("personal_usage_csv")))
    assert "personal-by-both" in mine
    assert "acme-by-both" not in mine
    assert "globex-by-both" not in mine


# The API: a token works only for the organizations its user belongs to


def api_client(token: str, org: Organization | str | None = None) -> Client:
    headers = {"Authorization": f"Bearer {token}"}
    if org is not None:
        headers["X-KiloCode-OrganizationId"] = str(org.pk if isinstance(org, Organization) else org)
    return Client(headers=headers)


def spend(client: Client, request_id: str) -> HttpResponse:
    body = {
        "request_id": request_id,
        "provider": "anthropic",
        "model": "claude-sonnet-4",
        "input_tokens": 1000,
        "output_tokens": 100,
    }
    return client.post("/api/usage", json.dumps(body), content_type="application/json")


def _member_of_both(tenants: Tenants) -> User:
    """Someone in both organizations, who has spent in each and personally."""

    both = UserFactory(email="both@example.test")
    accounts = {}
    for label, org in (("acme", tenants.acme.org), ("globex", tenants.globex.org)):
        Membership.objects.create(organization=org, user=both, role=Role.MEMBER)
        accounts[label] = account_for(organization=org)
    accounts["personal"] = account_for(user=both)
    fund(accounts["personal"], 1_000_000, key="fund-both")
    for label, account in accounts.items():
        usage_debit(
            account_id=account.pk,
            user_id=both.pk,
            cost=1_000,
            request_id=f"both-{label}",
            provider="anthropic",
            model="claude-sonnet-4",
            input_tokens=10,
            output_tokens=1,
            project=f"{label}-by-both",
        )
    _, raw = api_token_create(user=both, name="both")
    both.raw_token = raw  # type: ignore[attr-defined]
    return both


def test_it_keeps_api_tokens_to_their_organization(tenants: Tenants, db: None) -> None:
    acme, globex = tenants.acme, tenants.globex
    before = state_of(globex.org)
    crossing = api_client(acme.token, globex.org)
    for response in (
        crossing.get("/api/profile/balance"),
        crossing.get("/api/profile/usage"),
        spend(crossing, "cross-1"),
    ):
        assert response.status_code == 403
        assert response.json()["error"] == "forbidden"
    assert state_of(globex.org) == before
    assert not LedgerEntry.objects.filter(idempotency_key="cross-1").exists()
    # An unknown organization answers exactly as a stranger's does.
    unknown = api_client(acme.token, str(uuid.uuid4()))
    assert unknown.get("/api/profile/balance").json() == crossing.get("/api/profile/balance").json()
    # The control: Globex's own seated member spends there.
    assert spend(api_client(globex.token, globex.org), "own-1").status_code == 201


def test_it_lists_only_the_callers_organizations_in_the_api(tenants: Tenants, db: None) -> None:
    body = api_client(tenants.acme.token).get("/api/profile").json()
    assert [org["id"] for org in body["organizations"]] == [str(tenants.acme.org.pk)]
    assert "Globex" not in json.dumps(body)


def test_it_reports_api_usage_per_chosen_account(tenants: Tenants, db: None) -> None:
    both = _member_of_both(tenants)
    raw = both.raw_token  # type: ignore[attr-defined]
    by_profile = {
        label: api_client(raw, org).get("/api/profile/usage").json()
        for label, org in (
            ("acme", tenants.acme.org),
            ("globex", tenants.globex.org),
            ("personal", None),
        )
    }
    for label, body in by_profile.items():
        assert [day["requests"] for day in body["by_day"]] == [1], label
        assert [day["cost_microdollars"] for day in body["by_day"]] == [1_000], label
    # Only the caller's own usage, never the organization's other members'.
    members = api_client(tenants.acme.token, tenants.acme.org).get("/api/profile/usage").json()
    assert [day["cost_microdollars"] for day in members["by_day"]] == [1_234]
