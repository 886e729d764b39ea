"""Reads on pricing and money."""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime


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
