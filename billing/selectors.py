"""Reads on pricing."""
from __future__ import annotations

from billing.models import DEFAULT_GPU_RATES_WEI, DEFAULT_PRIORITY_MULTIPLIERS_BPS, PricingPolicy


def pricing_policy_current() -> PricingPolicy:
    """The newest published version; version 1 with the defaults if staff never published one."""
    policy = PricingPolicy.objects.order_by("-version").first()
    if policy is None:
        policy, _ = PricingPolicy.objects.get_or_create(
            version=1,
            defaults={
                "gpu_rates_wei": DEFAULT_GPU_RATES_WEI,
                "priority_multipliers_bps": DEFAULT_PRIORITY_MULTIPLIERS_BPS,
                "note": "defaults",
            },
        )
    return policy
