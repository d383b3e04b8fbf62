import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse


def _database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        return "down"
    return "ok"


def _redis() -> str:
    try:
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=0.5, socket_timeout=0.5
        )
        client.ping()
        client.close()
    except redis.RedisError:
        return "down"
    return "ok"


def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database and Redis answer; 503 naming what is down."""
    checks = {"database": _database(), "redis": _redis()}
    healthy = all(state == "ok" for state in checks.values())
    return JsonResponse(checks, status=200 if healthy else 503)
