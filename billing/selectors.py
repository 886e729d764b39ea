"""Reads on pricing and money."""
from __future__ import annotations

import time

from django.db import connection

from billing.models import DEFAULT_GPU_RATES_WEI, DEFAULT_PRIORITY_MULTIPLIERS_BPS, PricingPolicy

# How long a process keeps the current policy before reading it again. A version
# published in this process replaces it at once; one published by another process is
# seen within this many seconds (jobs name the version they were quoted under).
POLICY_CACHE_SECONDS = 5.0
_policy_cached: tuple[float, PricingPolicy] | None = None


def pricing_policy_current() -> PricingPolicy:
    """The newest published version; version 1 with the defaults if staff never published one.

    Kept per process for a few seconds, so neither a submit nor a settle reads it in the steady
    state. The defaults row written by a read inside a transaction is not kept: that
    transaction may yet be rolled back.
    """
    global _policy_cached
    cached = _policy_cached
    if cached is not None and time.monotonic() < cached[0]:
        return cached[1]
    policy, created = _pricing_policy_read()
    if not (created and connection.in_atomic_block):
        _policy_cached = (time.monotonic() + POLICY_CACHE_SECONDS, policy)
    return policy


def pricing_policy_remember(policy: PricingPolicy) -> None:
    """A version this process published and committed: it is the current one from now on."""
    global _policy_cached
    _policy_cached = (time.monotonic() + POLICY_CACHE_SECONDS, policy)


def pricing_policy_forget() -> None:
    global _policy_cached
    _policy_cached = None


def pricing_policy_version(version: int | None) -> PricingPolicy:
    """The version a job was quoted under (the current one if it is gone); versions never change."""
    current = pricing_policy_current()
    if version is None or current.version == version:
        return current
    return PricingPolicy.objects.filter(version=version).first() or current


def _pricing_policy_read() -> tuple[PricingPolicy, bool]:
    """The newest version, and whether this read wrote the defaults' row."""
    policy = PricingPolicy.objects.order_by("-version").first()
    if policy is not None:
        return policy, False
    return PricingPolicy.objects.get_or_create(
        version=1,
        defaults={
            "gpu_rates_wei": DEFAULT_GPU_RATES_WEI,
            "priority_multipliers_bps": DEFAULT_PRIORITY_MULTIPLIERS_BPS,
            "note": "defaults",
        },
    )
