"""The WSGI application gives the extension API its own short middleware chain and the pages the
full one."""

from io import BytesIO
from typing import Any

from config import wsgi


def call(path: str) -> tuple[str, dict[str, str], bytes]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_HOST": "testserver",
        "wsgi.url_scheme": "http",
        "wsgi.input": BytesIO(b""),
        "wsgi.errors": BytesIO(),
    }
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], *_: Any) -> None:
        answer["status"], answer["headers"] = status, dict(headers)

    body = b"".join(wsgi.application(environ, start_response))
    return answer["status"], answer["headers"], body


def test_the_api_runs_without_session_csrf_or_messages(db: None) -> None:
    names = [type(m).__name__ for m in _chain(wsgi.api)]
    assert names == ["SecurityMiddleware", "ApiBodyLimit"]
    assert "SessionMiddleware" not in names
    assert "CsrfViewMiddleware" not in names
    assert "MessageMiddleware" not in names
    status, headers, body = call("/api/profile")
    assert status.startswith("401")
    assert b"unauthorized" in body
    assert "Set-Cookie" not in headers
    assert "Cookie" not in headers.get("Vary", "")


def test_pages_keep_the_full_stack(db: None) -> None:
    names = [type(m).__name__ for m in _chain(wsgi.pages)]
    assert {"SessionMiddleware", "CsrfViewMiddleware", "MessageMiddleware"} <= set(names)
    status, headers, _ = call("/accounts/login/")
    assert status.startswith("200")
    assert "csrftoken" in headers.get("Set-Cookie", "")


def _chain(handler: Any) -> list[Any]:
    """The middleware instances of a handler, outermost first."""
    found, current = [], handler._middleware_chain
    while True:
        middleware = getattr(current, "__wrapped__", current)  # convert_exception_to_response
        if not hasattr(middleware, "get_response"):
            return found
        found.append(middleware)
        current = middleware.get_response
