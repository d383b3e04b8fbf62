"""The log-in throttle under attack: parallel bursts against the real Redis and PostgreSQL, the
client's address behind trusted proxies, the per-email limit across addresses, and the way back
for the email's owner (a successful log-in, a password reset)."""

import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.core import mail
from django.db import connection
from django.test import Client, RequestFactory
from django.urls import reverse

from accounts import ratelimit
from accounts.models import User
from tests.factories import PASSWORD, UserFactory

THROTTLED = "Too many failed log-in attempts"
ATTACKER = "203.0.113.9"
OWNER = "192.0.2.1"
PROXY = "10.0.0.2"


class PasswordChecks:
    """Counts the password checks that really happen (the expensive, guessable step)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self._lock = threading.Lock()
        original: Callable[[User, str], bool] = User.check_password

        def counted(user: User, raw_password: str) -> bool:
            with self._lock:
                self.count += 1
            return original(user, raw_password)

        monkeypatch.setattr(User, "check_password", counted)


def _log_in(url: str, email: str, password: str, *, address: str = ATTACKER) -> Client:
    client = Client(REMOTE_ADDR=address)
    client.response = client.post(url, {"username": email, "password": password})  # type: ignore[attr-defined]
    return client


def _logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def _in_parallel(count: int, attempt: Callable[[int], None]) -> None:
    barrier = threading.Barrier(count)

    def run(n: int) -> None:
        try:
            barrier.wait()
            attempt(n)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.fixture
def real_hashing(settings: Any) -> None:
    """The production password hasher (PBKDF2): a check takes as long as it does in production,
    which is the window a racing burst slips through."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("page", ["login", "admin:login"])
def test_40_parallel_wrong_passwords_get_at_most_the_limit_of_checks(
    page: str, real_hashing: None, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = UserFactory(email="target@example.test", is_staff=True)
    checks = PasswordChecks(monkeypatch)
    answers: list[str] = []

    def guess(n: int) -> None:
        client = _log_in(reverse(page), user.email, f"guess-{n}")
        answers.append(client.response.content.decode())  # type: ignore[attr-defined]
        assert not _logged_in(client)

    _in_parallel(40, guess)
    assert checks.count <= settings.LOGIN_ATTEMPTS_LIMIT == 5
    assert sum(THROTTLED in answer for answer in answers) >= 40 - settings.LOGIN_ATTEMPTS_LIMIT
    # The right password now is refused unchecked, at the dashboard's door and the admin's.
    for door in ("login", "admin:login"):
        client = _log_in(reverse(door), user.email, PASSWORD)
        assert THROTTLED in client.response.content.decode()  # type: ignore[attr-defined]
        assert not _logged_in(client)
    assert checks.count <= settings.LOGIN_ATTEMPTS_LIMIT


@pytest.mark.django_db(transaction=True)
def test_the_right_password_inside_a_throttled_burst_does_not_log_in(
    real_hashing: None, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """39 wrong passwords at once; the right one arrives while they are still being answered,
    after the limit's worth of attempts has been counted."""
    user = UserFactory(email="burst@example.test")
    checks = PasswordChecks(monkeypatch)
    pair_key = ratelimit._keys(user.email, ATTACKER)[0]
    counter = ratelimit._redis(settings.REDIS_URL).client
    right: list[Client] = []

    def attempt(n: int) -> None:
        if n < 39:
            _log_in(reverse("login"), user.email, f"guess-{n}")
            return
        deadline = time.monotonic() + 30
        while int(counter.get(pair_key) or 0) < settings.LOGIN_ATTEMPTS_LIMIT:
            assert time.monotonic() < deadline, "the burst never reached the limit"
            time.sleep(0.005)
        right.append(_log_in(reverse("login"), user.email, PASSWORD))

    _in_parallel(40, attempt)
    assert not _logged_in(right[0])
    assert THROTTLED in right[0].response.content.decode()  # type: ignore[attr-defined]
    assert checks.count <= settings.LOGIN_ATTEMPTS_LIMIT


def _request(remote: str, forwarded: str | None = None) -> Any:
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    return RequestFactory(REMOTE_ADDR=remote).get("/", headers=headers)


@pytest.mark.parametrize(
    ("proxies", "forwarded", "client"),
    [
        (0, None, PROXY),
        (0, "198.51.100.7", PROXY),  # nobody trusted: the header is the client's own word
        (1, "198.51.100.7", "198.51.100.7"),
        (1, "6.6.6.6, 198.51.100.7", "198.51.100.7"),  # a forged entry on the left
        (1, " 2001:DB8::1 ", "2001:db8::1"),
        (1, None, PROXY),  # did not come through the proxy
        (1, "not-an-address", PROXY),
        (2, "6.6.6.6, 198.51.100.7, 10.0.0.1", "198.51.100.7"),
        (2, "198.51.100.7", PROXY),  # fewer entries than trusted proxies
    ],
)
def test_the_client_address_comes_through_trusted_proxies_only(
    settings: Any, proxies: int, forwarded: str | None, client: str
) -> None:
    settings.TRUSTED_PROXY_COUNT = proxies
    assert ratelimit.client_address(_request(PROXY, forwarded)) == client


def _through_proxy(email: str, password: str, *, client_address: str) -> Client:
    client = Client(REMOTE_ADDR=PROXY, headers={"X-Forwarded-For": client_address})
    client.response = client.post(  # type: ignore[attr-defined]
        reverse("login"), {"username": email, "password": password}
    )
    return client


def test_behind_the_proxy_an_attacker_does_not_lock_out_the_owner(db: None, settings: Any) -> None:
    """Every request comes from the TLS proxy's address; the limit is per client all the same."""
    settings.TRUSTED_PROXY_COUNT = 1
    user = UserFactory(email="owner@example.test")
    for _ in range(settings.LOGIN_ATTEMPTS_LIMIT + 2):
        attacker = _through_proxy(user.email, "guess", client_address=ATTACKER)
    assert THROTTLED in attacker.response.content.decode()  # type: ignore[attr-defined]
    owner = _through_proxy(user.email, PASSWORD, client_address=OWNER)
    assert _logged_in(owner)
    # A forged X-Forwarded-For does not give the attacker a fresh count.
    forged = Client(REMOTE_ADDR=PROXY, headers={"X-Forwarded-For": f"{OWNER}, {ATTACKER}"})
    response = forged.post(reverse("login"), {"username": user.email, "password": PASSWORD})
    assert THROTTLED in response.content.decode()
    assert not _logged_in(forged)


def test_the_per_email_limit_holds_across_addresses(db: None, settings: Any) -> None:
    settings.LOGIN_ATTEMPTS_LIMIT = 2
    assert ratelimit.per_email_limit() == 8
    user = UserFactory(email="spread@example.test")
    for n in range(8):  # two wrong guesses from each of four addresses: none throttled yet
        client = _log_in(reverse("login"), user.email, "guess", address=f"198.51.100.{n // 2}")
        assert THROTTLED not in client.response.content.decode()  # type: ignore[attr-defined]
    client = _log_in(reverse("login"), user.email, PASSWORD, address="198.51.100.99")
    assert THROTTLED in client.response.content.decode()  # type: ignore[attr-defined]
    assert not _logged_in(client)


def test_a_successful_log_in_clears_its_own_count(db: None, settings: Any) -> None:
    settings.LOGIN_ATTEMPTS_LIMIT = 3
    user = UserFactory(email="typo@example.test")
    for _ in range(3):  # twice a typo, then the right password; and again
        _log_in(reverse("login"), user.email, "typo")
        _log_in(reverse("login"), user.email, "typo")
        assert _logged_in(_log_in(reverse("login"), user.email, PASSWORD))
    pair, everywhere = ratelimit._keys(user.email, ATTACKER)
    counter = ratelimit._redis(settings.REDIS_URL).client
    assert counter.get(pair) is None
    assert int(counter.get(everywhere) or 0) == 6  # the typos stay counted for the email
    assert counter.ttl(everywhere) > 0


def test_password_reset_works_while_the_email_is_throttled(db: None, settings: Any) -> None:
    settings.LOGIN_ATTEMPTS_LIMIT = 2
    user = UserFactory(email="locked@example.test")
    for n in range(10):  # someone else, from many addresses: the email is throttled everywhere
        _log_in(reverse("login"), user.email, "guess", address=f"198.51.100.{n}")
    assert (
        THROTTLED
        in _log_in(reverse("login"), user.email, PASSWORD, address=OWNER).response.content.decode()
    )  # type: ignore[attr-defined]

    owner = Client(REMOTE_ADDR=OWNER)
    assert owner.post(reverse("password_reset"), {"email": user.email}).status_code == 302
    assert len(mail.outbox) == 1
    link = re.search(r"https?://[^/]+(/accounts/password/reset/\S+)", mail.outbox[0].body)
    assert link
    form_url = owner.get(link.group(1))["Location"]
    done = owner.post(
        form_url, {"new_password1": "brand-new-pass-3", "new_password2": "brand-new-pass-3"}
    )
    assert done.status_code == 302
    assert _logged_in(_log_in(reverse("login"), user.email, "brand-new-pass-3", address=OWNER))


def test_it_lets_people_log_in_while_redis_is_down(db: None, settings: Any) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    user = UserFactory(email="calm@example.test")
    assert _logged_in(_log_in(reverse("login"), user.email, PASSWORD))
