"""Reads on accounts."""
from __future__ import annotations

from django.conf import settings

from marketplace.ids import secret_hash
from marketplace.models import ApiKey
from marketplace.shared_cache import cache_get, cache_set


def api_key_cache_key(digest: str) -> str:
    # keyed by the secret's hash, as the database is: the cache never holds a usable key
    return f"apikey:{digest}"


def api_key_get_active(*, secret: str) -> ApiKey | None:
    """The active key with this secret, and its customer.

    Every authenticated request asks, so the answer is cached for API_KEY_CACHE_SECONDS;
    revoking a key (``api_key_revoke``) or editing it or its customer in the admin drops the
    entry, so those take effect on the next request. Unknown secrets are not cached: a
    flood of guesses must not fill the cache.
    """
    digest = secret_hash(secret)
    seconds = settings.API_KEY_CACHE_SECONDS
    if seconds > 0:
        cached = cache_get(api_key_cache_key(digest))
        if isinstance(cached, ApiKey):
            return cached
    try:
        api_key = ApiKey.objects.select_related("customer").get(secret_hash=digest, revoked_at__isnull=True)
    except ApiKey.DoesNotExist:
        return None
    if seconds > 0:
        cache_set(api_key_cache_key(digest), api_key, seconds)
    return api_key
