"""Writes on accounts: customers, miners, API keys."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from marketplace.ids import new_secret, secret_hash
from marketplace.key_streams import key_revoked_publish
from marketplace.models import ApiKey, Customer, Miner
from marketplace.selectors import api_key_cache_key
from marketplace.shared_cache import cache_delete_many

# last_used_at is bookkeeping, not an audit log: one write a minute per key is enough
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    secret: str  # shown once; only its hash is stored


def customer_get_or_create(*, name: str) -> Customer:
    customer, _ = Customer.objects.get_or_create(name=name)
    return customer


def miner_get_or_create(*, name: str) -> Miner:
    miner, _ = Miner.objects.get_or_create(name=name)
    return miner


@transaction.atomic
def api_key_create(*, customer: Customer, name: str = "") -> IssuedKey:
    secret = new_secret("mk")
    api_key = ApiKey.objects.create(
        customer=customer, name=name, prefix=secret[:10], secret_hash=secret_hash(secret)
    )
    return IssuedKey(api_key=api_key, secret=secret)


def api_keys_forget_cached(*, api_keys) -> None:
    """Drop these keys' cached lookups, so a change to them counts from the next request.

    Dropped now and again after commit: inside a transaction, a request may re-cache the
    old row between the first drop and the commit.
    """
    keys = [api_key_cache_key(api_key.secret_hash) for api_key in api_keys]
    cache_delete_many(keys)
    transaction.on_commit(lambda: cache_delete_many(keys))


def api_key_revoke(*, api_key: ApiKey) -> None:
    """The key stops working at once: its cached lookups go, and its open live streams end."""
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    api_keys_forget_cached(api_keys=[api_key])
    pk = api_key.pk
    transaction.on_commit(lambda: key_revoked_publish(pk))


# when this process last wrote last_used_at, per key (by hash: ids can be reused in tests).
# Cached keys carry a last_used_at as old as their cache entry; without this each request
# in that gap would write it again.
_touched_at: dict[str, datetime] = {}


def api_key_touch(*, api_key: ApiKey) -> None:
    now = timezone.now()
    seen = [t for t in (api_key.last_used_at, _touched_at.get(api_key.secret_hash)) if t is not None]
    if not seen or now - max(seen) >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
        _touched_at[api_key.secret_hash] = now
