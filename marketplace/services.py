"""Writes on accounts: customers, miners, API keys."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from marketplace.ids import new_secret, secret_hash
from marketplace.models import ApiKey, Customer, Miner

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


def api_key_revoke(*, api_key: ApiKey) -> None:
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def api_key_touch(*, api_key: ApiKey) -> None:
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
