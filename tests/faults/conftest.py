"""What the fault tests break and restart: a throwaway redis-server of their own (never the
machine's shared one) and real Celery workers on it and the test database. Every process here is
started by these fixtures and stopped by its own id."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kombu.pools
import pytest
import redis
from django.conf import settings
from django.db import connection
from django.http import HttpResponse
from django.test import Client

from config.celery import app as celery_app
from payments.signing import signature_header

ROOT = Path(__file__).resolve().parents[2]
POLL = 0.05  # seconds between two looks at something we wait for


def wait_for(condition: Callable[[], object], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(POLL)
    raise AssertionError(f"gave up after {timeout:g} s waiting for {what}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """A redis-server with no persistence on a free port of 127.0.0.1, stopped and started again
    on the same port when a test says so."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        wait_for(lambda: self._answers(client), timeout=10, what="redis-server to start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=2)

    @staticmethod
    def _answers(client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False


@pytest.fixture
def throwaway_redis() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (Debian: apt-get install redis-server)")
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pointed_at(throwaway_redis: RedisServer, settings: Any) -> RedisServer:
    """The cache and the health check on the throwaway Redis (`settings` is pytest-django's
    fixture: restored after the test)."""
    settings.REDIS_URL = throwaway_redis.url
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": throwaway_redis.url}}
    return throwaway_redis


def _fresh_producers() -> None:
    """Forget the broker connections made so far: Celery and kombu keep pools per broker URL,
    and those made while Redis was down (or before it restarted) are dead."""
    kombu.pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@contextlib.contextmanager
def through_the_broker(server: RedisServer) -> Iterator[None]:
    """Tasks sent to the throwaway Redis for real workers, instead of run inline as elsewhere in
    the suite (where tests/conftest.py makes them eager). Set-up before this runs as usual."""
    saved = (celery_app.conf.broker_url, celery_app.conf.task_always_eager)
    celery_app.conf.broker_url = server.url
    celery_app.conf.task_always_eager = False
    _fresh_producers()
    try:
        yield
    finally:
        celery_app.conf.broker_url, celery_app.conf.task_always_eager = saved
        _fresh_producers()


def database_url_for_subprocesses() -> str:
    """The URL of the database the tests run on, for processes started from them."""
    conf = connection.settings_dict
    user = conf.get("USER") or ""
    password = f":{conf['PASSWORD']}" if conf.get("PASSWORD") else ""
    login = f"{user}{password}@" if user else ""
    port = f":{conf['PORT']}" if conf.get("PORT") else ""
    return f"postgres://{login}{conf.get('HOST') or ''}{port}/{conf['NAME']}"


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """kill -9 of the worker's own process group (it runs in a session of its own)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])


@dataclass
class Workers:
    start: Callable[..., Worker]
    starts: Path  # one line per handler start, written by the worker
    gate: Path  # test.faults.blocking waits for this file

    def started_events(self) -> list[str]:
        return self.starts.read_text().split() if self.starts.exists() else []


@pytest.fixture
def workers(transactional_db: None, pointed_at: RedisServer, tmp_path: Path) -> Iterator[Workers]:
    """Start real Celery workers (tests/faults/worker.py) on the throwaway Redis and the test
    database; every one of them is stopped at the end of the test."""
    started: list[Worker] = []
    starts, gate = tmp_path / "starts", tmp_path / "gate"

    def start(*, visibility_timeout: float | None = None, lease: float | None = None) -> Worker:
        log = tmp_path / f"worker-{len(started) + 1}.log"
        env = {
            **os.environ,
            "DEBUG": "1",
            "DATABASE_URL": database_url_for_subprocesses(),
            "REDIS_URL": pointed_at.url,
            "FAULTS_STARTS": str(starts),
            "FAULTS_GATE": str(gate),
            "EMAIL_URL": "dummymail://",
            # The sandbox's deliveries go nowhere from these workers (port 9 is discard).
            "SITE_URL": "http://127.0.0.1:9",
        }
        if visibility_timeout is not None:
            env["FAULTS_VISIBILITY_TIMEOUT"] = str(visibility_timeout)
        if lease is not None:
            env["WEBHOOK_PROCESSING_LEASE"] = f"{lease}s"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.faults.worker"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = Worker(process=process, log=log)
        started.append(worker)
        wait_for(
            lambda: "ready." in log.read_text(errors="replace") or process.poll() is not None,
            timeout=60,
            what="the Celery worker to be ready",
        )
        assert process.poll() is None, f"the worker died:\n{worker.tail()}"
        return worker

    yield Workers(start=start, starts=starts, gate=gate)
    for worker in started:
        worker.stop()
        print(f"--- {worker.log.name} (shown when the test failed)\n{worker.tail()}")


def post_webhook(event_type: str, event_id: str) -> HttpResponse:
    """Sign and post an event as the provider does; returns the response."""
    body = json.dumps(
        {
            "id": event_id,
            "object": "event",
            "api_version": "2026-08-27",
            "created": int(time.time()),
            "data": {"object": {"id": f"obj_{event_id}", "object": "test"}},
            "livemode": False,
            "type": event_type,
        }
    ).encode()
    header = signature_header(body, secret=settings.STRIPE_WEBHOOK_SECRET)
    return Client().post(
        "/stripe/webhook/",
        data=body,
        content_type="application/json",
        headers={"Stripe-Signature": header},
    )


@contextlib.contextmanager
def timed(limit: float, what: str) -> Iterator[None]:
    began = time.monotonic()
    yield
    took = time.monotonic() - began
    assert took < limit, f"{what} took {took:.1f} s (limit {limit:g} s)"
