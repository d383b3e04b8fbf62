"""The WSGI application: the dashboard with the full middleware stack, and the extension API
(`/api/`) with its own short one (settings.API_MIDDLEWARE): the API needs no session, CSRF,
messages, authentication or template machinery, and its hot path should not pay for them. Both
handlers share the settings, the URLconf, the database connections and the request signals."""

import os
from typing import Any

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
pages = get_wsgi_application()

from django.conf import settings  # noqa: E402 - after the setup above
from django.core.handlers.wsgi import WSGIHandler  # noqa: E402


class ApiHandler(WSGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        # BaseHandler reads settings.MIDDLEWARE; this happens once, at start-up.
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.API_MIDDLEWARE
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


api = ApiHandler()


def application(environ: dict[str, Any], start_response: Any) -> Any:
    handler = api if environ.get("PATH_INFO", "").startswith("/api/") else pages
    return handler(environ, start_response)
