"""Fixed personas: an organization with one person per role, and a neighbouring organization
whose owner is the outsider. Whatever the neighbour holds must stay invisible to Acme's people."""

import functools
import math
import os
import time
import traceback
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import pytest
import time_machine
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Min
from django.test import Client

from accounts.models import User
from config.celery import app as celery_app
from credits.pricing import prices_load
from credits.spend import spend_cache_clear
from organizations.models import Organization
from organizations.roles import Role
from payments import dispatch, factory
from payments.models import WebhookEvent
from payments.sandbox import chaos, delivery, engine
from payments.sandbox.models import SandboxEvent
from seats.plans import seat_plans_ensure
from tests.factories import MembershipFactory, OrganizationFactory, UserFactory


@dataclass
class World:
    org: Organization
    owner: User
    admin: User
    billing: User
    member: User
    neighbour: Organization
    outsider: User

    def person(self, role: str) -> User:
        return {
            Role.OWNER: self.owner,
            Role.ADMIN: self.admin,
            Role.BILLING_MANAGER: self.billing,
            Role.MEMBER: self.member,
            "outsider": self.outsider,
        }[role]


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> None:
    """The reference data migrations load (price catalogue, seat plans), also in a database
    reused from a run whose last transactional test flushed it."""
    with django_db_blocker.unblock():
        prices_load()
        seat_plans_ensure()
        # What transactional tests restore afterwards (serialized_rollback) must include them.
        if getattr(connection, "_test_serialized_contents", None):
            connection._test_serialized_contents = connection.creation.serialize_db_to_string()


@pytest.fixture(autouse=True)
def _clean_cache() -> None:
    cache.clear()
    # The API's per-process spend contexts: each test starts as a fresh process would.
    spend_cache_clear()


@pytest.fixture(autouse=True)
def _chaos_per_test(request: pytest.FixtureRequest) -> None:
    """Chaotic delivery's plans start afresh for each test, from SANDBOX_CHAOS_SEED and the
    test's name: a test sees the same plans run alone or in the whole suite."""
    chaos.reset(settings.SANDBOX_CHAOS_SEED ^ zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:  # type: ignore[no-untyped-def]
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def post_through_the_test_client(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    response = Client().post(
        urlparse(url).path,
        data=body,
        content_type="application/json",
        headers={"Stripe-Signature": headers["Stripe-Signature"]},
    )
    return response.status_code, response.content.decode()[:300]


@pytest.fixture(autouse=True)
def _sandbox_posts_through_the_test_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sandbox events reach /stripe/webhook/ through Django's test client (the real view and
    signature check, no socket); tasks queued after commit run inline instead of in Redis."""

    monkeypatch.setattr(delivery, "post", post_through_the_test_client)


celery_app.conf.task_always_eager = True

# Gateway methods that never reach the provider: its clock (Stripe's is the wall clock).
LOCAL_GATEWAY_METHODS = frozenset({"now"})
GATEWAY_IN_TRANSACTION = "gateway_in_transaction"


def open_transactions() -> int:
    """Atomic blocks the code under test opened (not pytest-django's test-case atomics)."""
    return sum(1 for block in connection.atomic_blocks if not block._from_testcase)


class NoCallInsideATransaction:
    """Wraps the gateway that payments.factory hands out: every call to the provider records a
    violation when a transaction (and so possibly a row lock) is open. Recorded, and raised, so
    that code catching broad exceptions cannot hide it; the test fails at its end either way.
    `isinstance` sees the wrapped gateway's class."""

    def __init__(self, gateway: Any, violations: list[str]) -> None:
        self._gateway = gateway
        self._violations = violations

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance() sees the gateway's class
        return type(self._gateway)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._gateway, name)
        if name.startswith("_") or name in LOCAL_GATEWAY_METHODS or not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if depth := open_transactions():
                where = "".join(traceback.format_stack(limit=12)[:-1])
                violation = (
                    f"gateway.{name}() called inside {depth} open transaction(s) "
                    f"(no gateway call inside a transaction or under a row lock):\n{where}"
                )
                self._violations.append(violation)
                raise AssertionError(violation)
            return attribute(*args, **kwargs)

        return guarded


def atomic_as_test_case() -> transaction.Atomic:
    """A transaction a test opens around what it runs and rolls back, as a test case does: the
    code under it is not inside a transaction of its own making (for the guard below and for
    durable atomic blocks), just as with pytest-django's own."""
    atomic = transaction.atomic()
    atomic._from_testcase = True
    return atomic


@pytest.fixture(autouse=True)
def _no_gateway_call_inside_a_transaction(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """DESIGN.md, Webhooks: gateway calls happen before a transaction opens, never inside one or
    under a row lock. Any test that makes one fails, unless marked gateway_in_transaction (a test
    that calls inside one on purpose, to show what happens)."""
    if request.node.get_closest_marker(GATEWAY_IN_TRANSACTION):
        yield
        return
    violations: list[str] = []
    monkeypatch.setattr(
        factory, "wrap", lambda gateway: NoCallInsideATransaction(gateway, violations)
    )
    yield
    if violations:
        pytest.fail(violations[0], pytrace=False)


def settle() -> None:
    """Deliver every sandbox event and process every stored webhook event, as worker and beat
    would: the asynchronous half of a payment, run to its end. With chaotic delivery, only the
    events due by the sandbox's clock (`drain` moves the clock until none is left)."""
    chaotic = settings.SANDBOX_DELIVERY == "chaos"
    for _ in range(20):
        owed = SandboxEvent.objects.filter(next_attempt_at__isnull=False)
        if chaotic:
            owed = owed.filter(next_attempt_at__lte=engine.now())
        pending_events = list(owed.order_by("delivery_order", "created", "id"))
        for event in pending_events:
            delivery.sandbox_event_deliver(event_id=event.id)
        owed = list(
            WebhookEvent.objects.filter(status=WebhookEvent.Status.PENDING).order_by(
                "created", "pk"
            )
        )
        for webhook_event in owed:
            dispatch.webhook_event_process(webhook_event_id=webhook_event.pk)
        if not pending_events and not owed:
            return


def drain(*, longest: timedelta = timedelta(days=7)) -> None:
    """Settle, then move the sandbox's clock to each next delivery that is due later (chaotic
    delivery: late events, second copies, lost attempts redelivered) and settle again, until no
    event is owed: the queue drained. Gives up (fails) after `longest` of sandbox time."""
    until = engine.now() + longest
    settle()
    while True:
        due = SandboxEvent.objects.filter(next_attempt_at__isnull=False).aggregate(
            first=Min("next_attempt_at")
        )["first"]
        if due is None:
            return
        assert due <= until, f"sandbox events still owed after {longest}"
        wait = math.ceil((due - engine.now()).total_seconds())
        if wait > 0:
            engine.clock_advance(seconds=wait)
        settle()


@pytest.fixture
def world(db: None) -> World:
    return world_create()


def world_create() -> World:
    org = OrganizationFactory(name="Acme Robotics")
    neighbour = OrganizationFactory(name="Globex")
    people = {
        role: MembershipFactory(
            organization=org, role=role, user=UserFactory(email=f"{role}@acme.test")
        ).user
        for role in Role
    }
    outsider = MembershipFactory(
        organization=neighbour, role=Role.OWNER, user=UserFactory(email="outsider@globex.test")
    ).user
    return World(
        org=org,
        owner=people[Role.OWNER],
        admin=people[Role.ADMIN],
        billing=people[Role.BILLING_MANAGER],
        member=people[Role.MEMBER],
        neighbour=neighbour,
        outsider=outsider,
    )


def client_for(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


# The whole suite can start at a given instant (`--start-at 2028-02-29T23:30:00Z`, or
# KB_TEST_START_AT): the clock then runs on from there, in this process and, through
# KB_TEST_CLOCK_OFFSET, in the processes the tests start (the browser tests' Celery worker).
# `make test` runs the clock-sensitive suites again at a few hard instants this way.
CLOCK_OFFSET_VARIABLE = "KB_TEST_CLOCK_OFFSET"
TRAVELLER = pytest.StashKey[Any]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--start-at",
        default=os.environ.get("KB_TEST_START_AT", ""),
        help="start the suite's clock at this ISO 8601 instant (UTC if no zone is given)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{GATEWAY_IN_TRANSACTION}: the test calls the gateway inside a transaction on purpose "
        "(the guard against it is off)",
    )
    start_at = config.getoption("--start-at")
    if not start_at:
        return
    try:
        instant = datetime.fromisoformat(start_at)
    except ValueError as error:
        raise pytest.UsageError(f"--start-at {start_at!r}: not an ISO 8601 instant") from error
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    os.environ[CLOCK_OFFSET_VARIABLE] = str(instant.timestamp() - time.time())
    traveller = time_machine.travel(instant, tick=True)
    traveller.start()
    config.stash[TRAVELLER] = traveller


def pytest_unconfigure(config: pytest.Config) -> None:
    traveller = config.stash.get(TRAVELLER, None)
    if traveller is not None:
        traveller.stop()


def pytest_report_header(config: pytest.Config) -> list[str]:

    lines = []
    if settings.SANDBOX_DELIVERY == "chaos":
        lines.append(
            "sandbox delivery chaotic (late, reordered, duplicated, lost and redelivered), "
            f"seed {settings.SANDBOX_CHAOS_SEED} "
            f"(replay: SANDBOX_DELIVERY=chaos SANDBOX_CHAOS_SEED={settings.SANDBOX_CHAOS_SEED})"
        )
    elif settings.SANDBOX_SHUFFLE_EVENTS:
        lines.append(
            f"sandbox events shuffled within each action, seed {settings.SANDBOX_SHUFFLE_SEED}"
        )
    else:
        lines.append("sandbox events in Stripe's usual order")
    if start_at := config.getoption("--start-at"):
        lines.append(f"clock started at {start_at} (replay: --start-at {start_at})")
    return lines


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Transactional tests flush the database afterwards, which would also remove the data that
    migrations load (seat plans, the price catalogue); restore it after each of them."""
    for item in items:
        marker = item.get_closest_marker("django_db")
        if marker is not None and marker.kwargs.get("transaction"):
            item.add_marker(
                pytest.mark.django_db(transaction=True, serialized_rollback=True), append=False
            )
