"""Reads on pricing and money."""
from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime

from django.db import connection

from billing.models import DEFAULT_GPU_RATES_WEI, DEFAULT_PRIORITY_MULTIPLIERS_BPS, PricingPolicy

# How long a process keeps the current policy before reading it again. A version
# published in this process replaces it at once; one published by another process is
# seen within this many seconds (jobs name the version they were quoted under).
POLICY_CACHE_SECONDS = 5.0
_policy_cached: tuple[float, PricingPolicy] | None = None


def pricing_policy_current() -> PricingPolicy:
    """The newest published version; version 1 with the defaults if staff never published one.

    Kept per process for a few seconds, so a submit reads no policy in the steady state.
    Only a read made outside any transaction is kept: one made inside may yet be rolled back.
    """
    global _policy_cached
    cached = _policy_cached
    if cached is not None and time.monotonic() < cached[0]:
        return cached[1]
    policy = _pricing_policy_read()
    if not connection.in_atomic_block:
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


def _pricing_policy_read() -> PricingPolicy:
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


def usage_by_day(*, customer, start: datetime | None, end: datetime | None) -> list[dict]:
    """Per-day totals of the customer's jobs: how many, what was charged, what is still held.

    Summed in Python: wei amounts are exact integers, which SQLite cannot sum.
    """
    from jobs.models import Job

    jobs = Job.objects.filter(customer=customer)
    if start:
        jobs = jobs.filter(created_at__gte=start)
    if end:
        jobs = jobs.filter(created_at__lte=end)
    days: dict = defaultdict(lambda: {"jobs": 0, "completed": 0, "charged": 0, "reserved": 0})
    rows = jobs.values_list("created_at", "status", "billing_status", "charged_price_wei", "reserved_price_wei")
    for created_at, status, billing_status, charged, reserved in rows.iterator():
        day = days[created_at.date()]
        day["jobs"] += 1
        day["completed"] += status == "completed"
        if billing_status == "settled":
            day["charged"] += int(charged)
        elif billing_status == "reserved":
            day["reserved"] += int(reserved)
    return [
        {
            "date": date.isoformat(),
            "jobs": totals["jobs"],
            "completed": totals["completed"],
            "charged_wei": str(totals["charged"]),
            "reserved_wei": str(totals["reserved"]),
        }
        for date, totals in sorted(days.items())
    ]


def miner_earnings(*, miner, start: datetime | None = None, end: datetime | None = None) -> dict:
    """What the miner's nodes were paid, by day and job by job (newest first, the last 100)."""
    from billing.ledger import account_for_miner
    from jobs.models import Job

    jobs = Job.objects.filter(node__miner=miner, billing_status="settled").select_related("node")
    if start:
        jobs = jobs.filter(completed_at__gte=start)
    if end:
        jobs = jobs.filter(completed_at__lte=end)
    days: dict = defaultdict(lambda: {"jobs": 0, "payout": 0})
    recent = []
    for job in jobs.order_by("-completed_at").iterator():
        day = days[job.completed_at.date()]
        day["jobs"] += 1
        day["payout"] += int(job.payout_price_wei)
        if len(recent) < 100:
            recent.append({
                "job_id": job.public_id,
                "node_id": job.node.public_id,
                "payout_wei": str(job.payout_price_wei),
                "completed_at": job.completed_at.isoformat().replace("+00:00", "Z"),
            })
    account = account_for_miner(miner)
    return {
        "miner_id": miner.public_id,
        "available_wei": str(account.available_wei),
        "total_paid_wei": str(sum(d["payout"] for d in days.values())),
        "jobs_paid": sum(d["jobs"] for d in days.values()),
        "days": [{"date": d.isoformat(), "jobs": v["jobs"], "payout_wei": str(v["payout"])} for d, v in sorted(days.items())],
        "recent": recent,
    }
