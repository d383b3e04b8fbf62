"""`make run`'s web server under a burst: runserver serves each request on a thread of its own, and
before the connection pool each thread kept its own PostgreSQL connection for CONN_MAX_AGE, so a
burst of concurrent API calls left one idle connection per thread until PostgreSQL refused more
("too many clients") and every page answered 500. The server is started here with Procfile's web
command exactly (on a free port, against the test database, with the pool's default settings);
100 concurrent requests must all answer, on at most DB_POOL_MAX_SIZE connections."""

import os
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from credits.services import api_token_create
from tests.factories import UserFactory
from tests.faults.conftest import database_url_for_subprocesses

ROOT = Path(__file__).resolve().parents[2]
BURST = 100
DEFAULT_POOL_MAX_SIZE = 10  # config/settings.py's default for DB_POOL_MAX_SIZE
APPLICATION = "kb-runserver-burst"  # marks the server's connections in pg_stat_activity
POLL = 0.02


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _web_command(port: int) -> list[str]:
    line = next(
        line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:")
    )
    command = line.removeprefix("web:").strip()
    assert "127.0.0.1:8000" in command, command
    return shlex.split(command.replace("127.0.0.1:8000", f"127.0.0.1:{port}"))


def _get(url: str, token: str = "") -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0  # no answer at all


class Server:
    def __init__(self, log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        keep = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("DB_POOL_") and k not in {"CONN_MAX_AGE", "DATABASE_URL"}
        }
        self.env = {
            **keep,
            "DEBUG": "1",  # as `make run` exports it
            "DATABASE_URL": f"{database_url_for_subprocesses()}?application_name={APPLICATION}",
        }

    def __enter__(self) -> "Server":
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                _web_command(self.port),
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # runserver's autoreloader has a child: stop them both
            )
        deadline = time.monotonic() + 90
        while _get(f"{self.url}/healthz") != 200:
            assert self.process.poll() is None, self.tail()
            assert time.monotonic() < deadline, "runserver did not answer /healthz\n" + self.tail()
            time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


class ConnectionWatch:
    """Samples how many connections the server holds on the test database, until stopped."""

    def __init__(self) -> None:
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._conninfo = database_url_for_subprocesses()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def count(self) -> int:
        with psycopg.connect(self._conninfo, autocommit=True) as watcher:
            return self._count(watcher)

    @staticmethod
    def _count(watcher: psycopg.Connection) -> int:
        row = watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [APPLICATION]
        ).fetchone()
        return int(row[0]) if row else 0

    def _watch(self) -> None:
        with psycopg.connect(self._conninfo, autocommit=True) as watcher:
            deadline = time.monotonic() + 300
            while not self._stop.is_set() and time.monotonic() < deadline:
                self.peak = max(self.peak, self._count(watcher))
                self.samples += 1
                time.sleep(POLL)

    def __enter__(self) -> "ConnectionWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with Server(tmp_path / "runserver.log") as running:
        yield running


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_100_requests_stays_within_the_pool(server: Server) -> None:
    user = UserFactory(email="burst@example.test")
    _, token = api_token_create(user=user, name="burst")
    connection.close()
    statuses: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(BURST)

    def call(n: int) -> None:
        barrier.wait()
        path = "/api/profile/balance" if n % 2 else "/api/profile"
        status = _get(server.url + path, token)
        with lock:
            statuses.append(status)

    with ConnectionWatch() as watch:
        threads = [threading.Thread(target=call, args=(n,)) for n in range(BURST)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert watch.samples > 0
    assert len(statuses) == BURST
    assert sorted(set(statuses)) == [200], (
        f"{statuses.count(200)} answered 200; others: {[s for s in statuses if s != 200][:10]}\n"
        + server.tail()
    )
    assert 0 < watch.peak <= DEFAULT_POOL_MAX_SIZE, (watch.peak, server.tail())
    # Afterwards the server keeps no more than its pool, and still answers.
    assert watch.count() <= DEFAULT_POOL_MAX_SIZE
    assert _get(server.url + "/api/profile", token) == 200
    log = server.log.read_text(errors="replace")
    assert re.search(r"Starting development server at http://127\.0\.0\.1:\d+/", log)
    print(f"{BURST} requests, peak {watch.peak} connections over {watch.samples} samples")


@pytest.mark.django_db(transaction=True)
def test_a_pooled_connection_that_died_is_replaced_before_use() -> None:
    """PostgreSQL restarted (here: every backend of the test database terminated) while the pool
    held an idle connection: the next request gets a fresh one, not an error. (The pool checks
    broken connections one by one with a growing pause, 1 s, 2 s, 4 s…; a fresh pool holds
    DB_POOL_MIN_SIZE of them, as a quiet process does once idle ones have been let go.)"""
    assert connection.settings_dict["OPTIONS"].get("pool"), "the tests run with the pool"
    connection.close()
    connection.close_pool()  # a fresh pool, as after a quiet spell
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    connection.close()  # back to the pool, idle
    database = connection.settings_dict["NAME"]
    with psycopg.connect(database_url_for_subprocesses(), autocommit=True) as killer:
        killed = killer.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [database],
        ).fetchone()
    assert killed
    assert killed[0] >= 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT 2")
        assert cursor.fetchone() == (2,)
