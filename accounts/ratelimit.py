"""The log-in throttle: attempts are counted before the password is checked, in Redis, per (email,
client address) and, with a higher limit, per email across addresses (docs/decisions.md, "Log-in
throttling").

Counting first is what makes the limit hold under concurrency: each attempt takes a number with
one atomic INCR, and only attempts numbered within the limit get a password check, however many
arrive at once. If Redis is down the limit is not enforced (fail open): refusing every log-in
during a cache outage would be worse than a short unthrottled window."""

import hashlib
import ipaddress
import logging
from dataclasses import dataclass
from functools import cache

import redis
from django.conf import settings
from django.http import HttpRequest
from redis.commands.core import Script
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# Each counter +1; a new counter (or one somehow left without expiry) lives for the window.
_COUNT = """
local counts = {}
for i, key in ipairs(KEYS) do
  counts[i] = redis.call('INCR', key)
  if counts[i] == 1 or redis.call('TTL', key) < 0 then
    redis.call('EXPIRE', key, ARGV[1])
  end
end
return counts
"""
# A successful log-in: its (email, address) counter goes, and its own attempt is taken back from
# the email's counter (never below zero, never creating a counter without expiry).
_SUCCEEDED = """
redis.call('DEL', KEYS[1])
local left = tonumber(redis.call('GET', KEYS[2]) or '0')
if left > 0 then redis.call('DECR', KEYS[2]) end
return left
"""


@dataclass(frozen=True)
class _Redis:
    client: redis.Redis
    count: Script
    succeeded: Script


@cache
def _redis(url: str) -> _Redis:
    """One client (and connection pool) per process; short timeouts, as for the cache."""
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    return _Redis(
        client=client,
        count=client.register_script(_COUNT),
        succeeded=client.register_script(_SUCCEEDED),
    )


def client_address(request: HttpRequest) -> str:
    """Who is asking: REMOTE_ADDR, or behind TRUSTED_PROXY_COUNT proxies that each append the
    address they received from to X-Forwarded-For, the entry the outermost of them wrote (the
    n-th from the right). Entries further left are the client's own word, never trusted."""
    remote = str(request.META.get("REMOTE_ADDR") or "")
    trusted = settings.TRUSTED_PROXY_COUNT
    if trusted <= 0:
        return remote
    forwarded = str(request.META.get("HTTP_X_FORWARDED_FOR") or "")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    if len(hops) < trusted:
        return remote  # it did not come through every trusted proxy
    try:
        return str(ipaddress.ip_address(hops[-trusted]))
    except ValueError:
        return remote


def _keys(email: str, address: str) -> list[str]:
    who = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    return [f"kb:login:pair:{who}:{address[:64]}", f"kb:login:email:{who}"]


def per_email_limit() -> int:
    return settings.LOGIN_ATTEMPTS_PER_EMAIL_LIMIT or 4 * settings.LOGIN_ATTEMPTS_LIMIT


def login_attempt_allowed(*, email: str, address: str) -> bool:
    """Count this attempt; whether it is within both limits (and so may check the password)."""
    keys = _keys(email, address)
    window = int(settings.LOGIN_ATTEMPTS_WINDOW.total_seconds())
    try:
        pair, everywhere = _redis(settings.REDIS_URL).count(keys=keys, args=[window])
    except RedisError:
        logger.warning("log-in throttle unavailable: Redis is down")
        return True
    allowed = pair <= settings.LOGIN_ATTEMPTS_LIMIT and everywhere <= per_email_limit()
    if not allowed and (
        pair == settings.LOGIN_ATTEMPTS_LIMIT + 1 or everywhere == per_email_limit() + 1
    ):
        logger.warning(
            "log-in throttled: %s attempts from %s, %s for the email from anywhere",
            pair,
            address,
            everywhere,
        )
    return bool(allowed)


def login_attempt_succeeded(*, email: str, address: str) -> None:
    """A right password within the limits: forget this pair's attempts and give this one back."""
    try:
        _redis(settings.REDIS_URL).succeeded(keys=_keys(email, address))
    except RedisError:
        logger.warning("log-in throttle not reset: Redis is down")


def login_throttle_clear(*, email: str, address: str) -> None:
    """After a password reset, which proves the mailbox: the email starts afresh from here."""
    try:
        _redis(settings.REDIS_URL).client.delete(*_keys(email, address))
    except RedisError:
        logger.warning("log-in throttle not cleared: Redis is down")
