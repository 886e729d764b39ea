"""Quotes from the pricing policy, in integer wei."""
from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Max

from billing.models import PricingPolicy
from billing.selectors import pricing_policy_current


@dataclass(frozen=True)
class Quote:
    policy_version: int
    price_wei: int
    rate_wei_per_second: int
    expected_seconds: int


def quote_job(*, gpu_type: str, gpu_count: int, priority: str, expected_seconds: int) -> Quote:
    """rate(gpu_type) × max(gpu_count, 1) × expected seconds × priority multiplier."""
    policy = pricing_policy_current()
    rates = policy.gpu_rates_wei or {}
    rate_key = "cpu" if gpu_count == 0 else gpu_type
    rate = int(rates[rate_key]) if rate_key in rates else int(policy.default_rate_wei)
    multiplier = int((policy.priority_multipliers_bps or {}).get(priority, 10000))
    price = rate * max(gpu_count, 1) * max(expected_seconds, 1) * multiplier // 10000
    return Quote(
        policy_version=policy.version,
        price_wei=price,
        rate_wei_per_second=rate,
        expected_seconds=expected_seconds,
    )


def pricing_policy_publish(*, created_by=None, **fields) -> PricingPolicy:
    """Publish a new version; earlier versions stay as they were, for the jobs that used them."""
    for _ in range(3):
        try:
            with transaction.atomic():
                latest = PricingPolicy.objects.aggregate(v=Max("version"))["v"] or 0
                return PricingPolicy.objects.create(version=latest + 1, created_by=created_by, **fields)
        except IntegrityError:  # two staff published at once; take the next number
            continue
    raise RuntimeError("could not allocate a pricing policy version")
