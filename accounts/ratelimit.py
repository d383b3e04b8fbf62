"""Counting failed attempts in the cache. If Redis is down the limit is not enforced (fail open):
refusing every log-in during a cache outage would be worse than a short unthrottled window."""

import logging

from django.core.cache import cache
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)


def attempts_exceeded(key: str, *, limit: int) -> bool:
    try:
        return int(cache.get(key, 0)) >= limit
    except RedisError:
        logger.warning("rate limit unavailable: cache is down")
        return False


def attempt_failed(key: str, *, window_seconds: int) -> None:
    try:
        if cache.add(key, 1, timeout=window_seconds):
            return
        cache.incr(key)
    except (RedisError, ValueError):
        logger.warning("rate limit not recorded: cache is down")


def attempts_reset(key: str) -> None:
    try:
        cache.delete(key)
    except RedisError:
        logger.warning("rate limit not reset: cache is down")
