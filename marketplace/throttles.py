"""Rate limits per API key (not per address): a minute window and an hour window.

Each key has its own limits where staff set them, else its customer's, else the defaults.

Counters live in the Django cache: in-process on the embedded default, in Redis
in production, so every web process shares them. On Redis both windows are counted in
one round trip (one Lua script: INCR, and EXPIRE on a window's first request). When the
cache is unreachable the limit fails open: the request is served and a warning logged,
since an outage of the counters must not become an outage of the API (issue 12).
"""
from __future__ import annotations

import time

from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.throttling import BaseThrottle

from marketplace.models import ApiKey
from marketplace.shared_cache import CACHE_ERRORS, cache_unavailable

WINDOWS = (("m", 60), ("h", 3600))
# a window's counter outlives the window a little, so a late request never restarts it
TTL_MARGIN_SECONDS = 5

_COUNT_SCRIPT = """
local counts = {}
for i, key in ipairs(KEYS) do
  counts[i] = redis.call('INCR', key)
  if counts[i] == 1 then redis.call('EXPIRE', key, ARGV[i]) end
end
return counts
"""
_count_script = None


def _count_on_redis(cache: RedisCache, keys: list[str], ttls: list[int]) -> list[int]:
    global _count_script
    # Django's RedisCache has no multi-key increment; its client (redis-py) runs the script.
    # Counters are plain integers in Redis, which is also how that cache stores an int.
    client = cache._cache.get_client(write=True)
    if _count_script is None:
        _count_script = client.register_script(_COUNT_SCRIPT)
    full_keys = [cache.make_and_validate_key(key) for key in keys]
    return [int(n) for n in _count_script(keys=full_keys, args=ttls, client=client)]


def _count_anywhere(cache, keys: list[str], ttls: list[int]) -> list[int]:
    counts = []
    for key, ttl in zip(keys, ttls):
        cache.add(key, 0, ttl)
        try:
            counts.append(cache.incr(key))
        except ValueError:  # expired between add and incr
            cache.set(key, 1, ttl)
            counts.append(1)
    return counts


def counters_increment(keys: list[str], ttls: list[int], *, unenforced: str) -> list[int] | None:
    """Add one to each counter (each made with its ttl on its first count), atomically per
    counter; their new values, or None with the cache unreachable (``unenforced`` says what
    then goes unchecked, in the warning)."""
    try:
        cache = caches[DEFAULT_CACHE_ALIAS]
        count = _count_on_redis if isinstance(cache, RedisCache) else _count_anywhere
        return count(cache, keys, ttls)
    except CACHE_ERRORS as exc:
        cache_unavailable(exc, doing=f"{unenforced} until it is back")
        return None


def rate_limit_wait(api_key: ApiKey) -> float:
    """Count one request for ``api_key``; the seconds until it may call again (0: allowed now)."""
    limits = {"m": api_key.minute_limit, "h": api_key.hour_limit}
    now = time.time()
    windows = [(name, length, int(now // length)) for name, length in WINDOWS]
    keys = [f"ratelimit:{api_key.pk}:{name}:{window}" for name, _, window in windows]
    ttls = [length + TTL_MARGIN_SECONDS for _, length, _ in windows]
    counts = counters_increment(keys, ttls, unenforced="rate limits are not enforced")
    if counts is None:
        return 0.0
    wait = 0.0
    for (name, length, window), used in zip(windows, counts):
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
