"""The production server for the HTTP benchmarks, and a small client for it.

`Server` starts `make serve` itself (the production web server exactly as deployed:
`gunicorn --config config/gunicorn.py config.wsgi`, after collectstatic) on 127.0.0.1 with DEBUG
off, production secrets made up for the run, the sandbox gateway and the benchmark's database
and Redis DB, and stops its whole process group at the end, whatever happened. `Connection` is a
small HTTP/1.1 client on raw sockets, far cheaper per request than http.client.
"""

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from bench import common

HOST = "127.0.0.1"  # traffic never leaves the machine
SOCKET_TIMEOUT = 10.0
MAX_READS = 256  # recv calls per response: ours are a few hundred bytes
BODY = (
    '{{"request_id":"{request_id}","provider":"'
    + common.PROVIDER
    + '","model":"'
    + common.MODEL
    # one line: the fields an extension sends
    + '","input_tokens":1200,"output_tokens":350,"cache_read_tokens":0}}'
)


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    expected: int
    head: bytes  # request line and fixed headers

    def request(self, request_id: str) -> bytes:
        body = BODY.format(request_id=request_id).encode()
        return self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def endpoint(name: str, path: str, expected: int, *, port: int, world: common.World) -> Endpoint:
    """A usage-shaped POST as the funded organization's seated member sends it."""
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {HOST}:{port}\r\n"
        f"Authorization: Bearer {world.token}\r\n"
        f"X-KiloCode-OrganizationId: {world.organization_id}\r\n"
        # What the TLS-terminating proxy in front of production adds.
        "X-Forwarded-Proto: https\r\n"
        "Content-Type: application/json\r\n"
    )
    return Endpoint(name=name, path=path, expected=expected, head=head.encode())


class Connection:
    """One connection to 127.0.0.1, kept alive when the server allows it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.connects = 0

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def exchange(self, data: bytes) -> tuple[int, bytes]:
        reused = self.sock is not None
        try:
            return self._exchange(data)
        except (ConnectionError, TimeoutError):
            self.close()
            if not reused:
                raise
        # A kept-alive connection the server had closed meanwhile; usage posts are idempotent.
        return self._exchange(data)

    def _exchange(self, data: bytes) -> tuple[int, bytes]:
        if self.sock is None:
            self.sock = socket.create_connection((HOST, self.port), timeout=SOCKET_TIMEOUT)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connects += 1
        sock = self.sock
        sock.sendall(data)
        buffer = self._recv(sock)
        for _ in range(MAX_READS):
            if (end := buffer.find(b"\r\n\r\n")) >= 0:
                break
            buffer += self._recv(sock)
        else:
            raise ConnectionError("no end of the response headers")
        status, length, close, chunked = _head(buffer[:end])
        body = buffer[end + 4 :]
        if chunked:
            body = self._chunks(sock, body)
            if close:
                self.close()
            return status, body
        for _ in range(MAX_READS):
            if length is not None and len(body) >= length:
                break
            chunk = sock.recv(65536)
            if not chunk:
                if length is not None:
                    raise ConnectionError("connection closed mid-response")
                close = True  # no Content-Length: the body ends with the connection
                break
            body += chunk
        else:
            raise ConnectionError("response body too long")
        if close:
            self.close()
        return status, body

    def _chunks(self, sock: socket.socket, data: bytes) -> bytes:
        """A chunked body (gunicorn's answer when the view set no Content-Length)."""
        body = b""
        for _ in range(MAX_READS):
            while (line_end := data.find(b"\r\n")) >= 0:
                size = int(data[:line_end].split(b";")[0], 16)
                if len(data) < line_end + 2 + size + 2:
                    break
                if size == 0:
                    return body  # no trailers in our answers
                body += data[line_end + 2 : line_end + 2 + size]
                data = data[line_end + 2 + size + 2 :]
            data += self._recv(sock)
        raise ConnectionError("chunked body too long")

    @staticmethod
    def _recv(sock: socket.socket) -> bytes:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        return chunk


def _head(head: bytes) -> tuple[int, int | None, bool, bool]:
    """Status, Content-Length, whether the server closes the connection after this answer and
    whether the body comes in chunks."""
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, close, chunked = None, lines[0].startswith("HTTP/1.0"), False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection":
            close = value.strip().lower() == "close"
        elif name == "transfer-encoding":
            chunked = value.strip().lower() == "chunked"
    return status, length, close, chunked


def production_env(port: int) -> dict[str, str]:
    """What a production deployment sets, with secrets made up for this run."""
    return {
        **common.BENCH_ENV,
        "DEBUG": "0",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": HOST,
        "STRIPE_WEBHOOK_SECRET": "whsec_bench_" + secrets.token_hex(8),
        # No Stripe key: production refuses to start on the sandbox unless this says so.
        "BILLING_GATEWAY": "sandbox",
        "SITE_URL": f"https://{HOST}:{port}",
        "PORT": str(port),
        # One token sends everything here; the production limit would answer 429.
        "API_RATE_LIMIT_PER_MINUTE": str(10**9),
    }


class Server:
    """`make serve` on 127.0.0.1:port with production settings (production_env), `env`
    adding or replacing variables (a webhook secret the caller signs with, WEB_CONCURRENCY...).
    It runs in its own session, so its process group is make, gunicorn's master and its
    workers: `owns` tells them apart in the CPU accounting, and `stop` ends them all."""

    def __init__(self, *, port: int, env: Mapping[str, str] | None = None) -> None:
        self.port = port
        self.env = {**production_env(port), **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.gettempdir()) / f"kb-bench-serve-{os.getpid()}-{port}.log"

    @property
    def pid(self) -> int:
        return self.process.pid if self.process else -1

    def owns(self, process: common.ProcessTicks) -> bool:
        return self.process is not None and process.group == self.process.pid

    def __enter__(self) -> "Server":
        with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.5):
            raise SystemExit(f"bench: {HOST}:{self.port} is already in use; choose another port")
        inherited = {k: v for k, v in os.environ.items() if k != "GUNICORN_BIND"}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 - fixed command
                ["make", "--no-print-directory", "-C", str(common.ROOT), "serve"],  # noqa: S607
                cwd=common.ROOT,
                env={**inherited, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout: float = 180) -> None:
        """Until /healthz answers 200 (make serve runs collectstatic first)."""
        deadline = time.monotonic() + timeout
        probe = f"GET /healthz HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n\r\n".encode()
        while time.monotonic() < deadline:
            if not self.alive():
                raise SystemExit(f"bench: make serve exited:\n{self.log_tail()}")
            try:
                status, _ = Connection(self.port).exchange(probe)
            except OSError:
                status = 0
            if status == 200:
                return
            time.sleep(0.25)
        raise SystemExit(f"bench: make serve did not answer /healthz in {timeout:g} s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        # make ends at once; gunicorn finishes its requests (graceful_timeout is 30 s).
        deadline = time.monotonic() + 40
        while self._members() and time.monotonic() < deadline:
            self.process.poll()
            time.sleep(0.1)
        if self._members():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)

    def _members(self) -> list[int]:
        """Live processes of the server's group (zombies waiting to be reaped do not count)."""
        group = self.pid
        members = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            state, _, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
            if int(pgrp) == group and state != "Z":
                members.append(int(entry.name))
        return members

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
