"""The browser journeys' world: pytest-django's live server, a real Celery worker in a subprocess
on the same test database, and Debian's Chromium driven by Playwright (sync API).

Money moves as in production: the sandbox gateway's events are posted over HTTP by the worker to
the live server's /stripe/webhook/, which stores them and queues their processing for the worker.
The project-wide fixtures in tests/conftest.py short-circuit both (test client, eager tasks);
`live` below undoes that for each journey.
"""

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings as django_settings
from django.db import connection, connections
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    expect,
    sync_playwright,
)

from config.celery import app as celery_app
from payments.sandbox import delivery
from tests.browser.support import CHROMIUM, CHROMIUM_ARGS, settle, wait_until

REAL_POST = delivery.post  # captured at import, before tests/conftest.py swaps it per test
ROOT = Path(__file__).resolve().parents[2]
WORKER_LOG = pytest.StashKey[Path]()
SCREENSHOTS = pytest.StashKey[Path]()
WORKER_LOG_TAIL_LINES = 80
WORKER_READY_TIMEOUT = 60.0
WORKER_STOP_TIMEOUT = 10.0
PAGE_TIMEOUT_MS = 15_000

expect.set_options(timeout=PAGE_TIMEOUT_MS)


def _database_url(settings_dict: dict[str, Any]) -> str:
    user = quote(settings_dict.get("USER") or "", safe="")
    password = quote(settings_dict.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else f"{user}@" if user else ""
    host = quote(settings_dict.get("HOST") or "", safe="")
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    return f"postgres://{credentials}{host}{port}/{quote(settings_dict['NAME'], safe='')}"


@pytest.fixture(scope="module")
def browser_queue() -> str:
    """A queue of our own on the project's Redis, so that no other worker takes these tasks."""
    return f"kb-browser-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def celery_worker(
    django_db_setup: None,
    live_server: Any,
    browser_queue: str,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[subprocess.Popen[bytes]]:
    """`celery worker --pool=solo` on the test database the live server uses, posting webhooks
    to the live server, with the test process's webhook secret. Its log is kept beside the
    screenshots and shown when it fails to start."""
    log_path = tmp_path_factory.mktemp("browser-worker", numbered=True) / "worker.log"
    request.config.stash[WORKER_LOG] = log_path
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "1",
        "DATABASE_URL": _database_url(connection.settings_dict),
        "CONN_MAX_AGE": "0",  # no idle connection left on the test database between tasks
        "REDIS_URL": django_settings.REDIS_URL,
        "SITE_URL": live_server.url,
        "STRIPE_SECRET_KEY": "",  # the sandbox gateway, as in the test process
        "STRIPE_WEBHOOK_SECRET": django_settings.STRIPE_WEBHOOK_SECRET,
        "KB_BROWSER_QUEUE": browser_queue,
        # The worker's emails go to its log, where a journey can read them (never to a real
        # SMTP server configured in the developer's environment).
        "EMAIL_URL": "consolemail://",
        "LOG_LEVEL": "INFO",
    }
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tests.browser.worker_app",
        "worker",
        "--pool=solo",
        "--concurrency=1",
        "--queues",
        browser_queue,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel=INFO",
    ]
    with log_path.open("wb") as log:
        worker = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def ready() -> bool:
        if worker.poll() is not None:
            raise AssertionError(
                f"the Celery worker exited with {worker.returncode}:\n{log_path.read_text()}"
            )
        return " ready." in log_path.read_text()

    try:
        wait_until(ready, what="the Celery worker to start", timeout=WORKER_READY_TIMEOUT)
        yield worker
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=WORKER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=WORKER_STOP_TIMEOUT)


@pytest.fixture
def worker_log(request: pytest.FixtureRequest, celery_worker: subprocess.Popen[bytes]) -> Path:
    """The worker's log: what it did, and the emails it sent (console backend)."""
    return request.config.stash[WORKER_LOG]


@pytest.fixture
def browser(live: str) -> Iterator[Browser]:
    """Headless Chromium for one journey; Playwright gives each launch a fresh, temporary
    user-data dir.

    Per journey, not per module: Playwright's sync API marks an asyncio loop as running in this
    thread for as long as it runs, and Django then takes the ORM calls of this thread for async
    code: it refuses them (hence DJANGO_ALLOW_ASYNC_UNSAFE, nothing here being async) and hands
    them connections of their own. pytest-django's setup and flush around each journey must see
    the thread's usual connection (which carries the serialized migration data that transactional
    tests restore), so the browser starts after them and stops before."""
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            yield chromium
            chromium.close()
            connections.close_all()  # the journey's own connections, while it still sees them
    finally:
        if previous is None:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="module")
def screenshot_dir(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Path:
    folder = tmp_path_factory.mktemp("browser-screenshots", numbered=True)
    request.config.stash[SCREENSHOTS] = folder
    return folder


@pytest.fixture
def live(
    live_server: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    celery_worker: subprocess.Popen[bytes],
    browser_queue: str,
) -> Iterator[str]:
    """The live server's address, with sandbox events delivered over HTTP by the worker and
    tasks sent to the worker's queue instead of run inline."""
    settings.SITE_URL = live_server.url
    monkeypatch.setattr(delivery, "post", REAL_POST)
    previous = celery_app.conf.task_always_eager, celery_app.conf.task_default_queue
    celery_app.conf.task_always_eager = False
    celery_app.conf.task_default_queue = browser_queue
    try:
        yield live_server.url
        # Let the worker finish before the database is flushed under it.
        settle()
    finally:
        celery_app.conf.task_always_eager, celery_app.conf.task_default_queue = previous
        assert celery_worker.poll() is None, "the Celery worker died during the journey"


@pytest.fixture
def new_page(browser: Browser, live: str) -> Iterator[Callable[[], Page]]:
    """Pages, each in a context of its own (one per person: cookies are not shared). A script
    error that no one caught, or anything the content security policy blocked, fails the
    journey: the person would be left with a page that does not work as it looks."""
    contexts: list[BrowserContext] = []
    problems: list[str] = []

    def watch(page: Page, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            problems.append(f"{page.url}: {message.text}")

    def make() -> Page:
        context = browser.new_context(base_url=live, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: problems.append(f"{page.url}: {error}"))
        page.on("console", lambda message: watch(page, message))
        return page

    yield make
    for context in contexts:
        context.close()
    assert not problems, f"the pages broke in the browser: {problems}"


@pytest.fixture
def snap(screenshot_dir: Path, request: pytest.FixtureRequest) -> Callable[[Page, str], Path]:
    """Save a full-page screenshot as <journey>/<NN>-<name>.png."""
    folder = screenshot_dir / request.node.name
    folder.mkdir(exist_ok=True)
    taken = [0]

    def take(page: Page, name: str) -> Path:
        taken[0] += 1
        path = folder / f"{taken[0]:02d}-{name}.png"
        page.screenshot(path=path, full_page=True)
        return path

    return take


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed journey's report ends with the tail of the worker's log: what it delivered,
    processed, or choked on."""
    report = yield
    log_path = item.config.stash.get(WORKER_LOG, None)
    if report.failed and log_path is not None and log_path.exists():
        tail = log_path.read_text(errors="replace").splitlines()[-WORKER_LOG_TAIL_LINES:]
        report.sections.append(("Celery worker log (tail)", "\n".join(tail)))
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    folder = config.stash.get(SCREENSHOTS, None)
    if folder is not None:
        terminalreporter.write_line(f"browser journeys: screenshots in {folder}")
