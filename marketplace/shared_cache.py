"""The Django cache as an optimisation that may fail: without it, requests still answer.

API-key lookups and rate-limit counters live in the cache (Redis in production). When Redis
is unreachable, a read counts as a miss, a write is skipped, and one warning a minute per
process says so: the API keeps answering from PostgreSQL instead of turning into 500s
(issue 12), and the rate limit is not enforced until Redis is back.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Iterable

from django.core.cache import cache
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# what an unreachable cache raises: redis-py's errors, and the socket's own
CACHE_ERRORS = (RedisError, OSError)
WARN_EVERY_SECONDS = 60.0

_warned_at = 0.0
_warn_lock = threading.Lock()


def cache_unavailable(exc: BaseException, *, doing: str) -> None:
    """Log that the cache failed, once a minute at most: an outage must not flood the log."""
    global _warned_at
    now = time.monotonic()
    with _warn_lock:
        if now - _warned_at < WARN_EVERY_SECONDS and _warned_at:
            return
        _warned_at = now
    log.warning("the cache is unreachable (%s: %s); %s", type(exc).__name__, exc, doing)


def cache_get(key: str) -> Any:
    try:
        return cache.get(key)
    except CACHE_ERRORS as exc:
        cache_unavailable(exc, doing="reading through to the database")
        return None


def cache_set(key: str, value: Any, timeout: float) -> None:
    try:
        cache.set(key, value, timeout)
    except CACHE_ERRORS as exc:
        cache_unavailable(exc, doing="not caching")


def cache_add(key: str, value: Any, timeout: float) -> bool:
    """Set ``key`` unless it is set; True if this call set it. Without the cache, always True."""
    try:
        return cache.add(key, value, timeout)
    except CACHE_ERRORS as exc:
        cache_unavailable(exc, doing="acting as if the key were free")
        return True


def cache_delete_many(keys: Iterable[str]) -> None:
    keys = list(keys)
    if not keys:
        return
    try:
        cache.delete_many(keys)
    except CACHE_ERRORS as exc:
        # rare (a revocation, a staff edit) and it matters: logged every time. Entries
        # written before the outage expire on their own (API_KEY_CACHE_SECONDS).
        log.error("the cache is unreachable (%s: %s); %d cached entries were not dropped",
                  type(exc).__name__, exc, len(keys))
