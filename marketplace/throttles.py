"""Rate limits per API key (not per address): a minute window and an hour window.

Each key has its own limits where staff set them, else its customer's, else the defaults.

Counters live in the Django cache: in-process on the embedded default, in Redis
in production, so every web process shares them.
"""
from __future__ import annotations

import time

from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

from marketplace.models import ApiKey

WINDOWS = (("m", 60), ("h", 3600))


def _count(key: str, ttl: int) -> int:
    cache.add(key, 0, ttl)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, ttl)
        return 1


def rate_limit_wait(api_key: ApiKey) -> float:
    """Count one request for ``api_key``; the seconds until it may call again (0: allowed now)."""
    limits = {"m": api_key.minute_limit, "h": api_key.hour_limit}
    now = time.time()
    wait = 0.0
    for name, length in WINDOWS:
        window = int(now // length)
        used = _count(f"ratelimit:{api_key.pk}:{name}:{window}", length + 5)
        if used > limits[name]:
            wait = max(wait, (window + 1) * length - now)
    return wait


class ApiKeyRateThrottle(BaseThrottle):
    def allow_request(self, request, view) -> bool:
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            return True
        self._wait = rate_limit_wait(api_key)
        return self._wait == 0.0

    def wait(self) -> float | None:
        return self._wait or None
