"""Reads on pricing and money."""
from __future__ import annotations

from datetime import datetime

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate

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
    """Per-day totals of the customer's jobs: how many, what was charged, what is still held."""
    from jobs.models import Job

    jobs = Job.objects.filter(customer=customer)
    if start:
        jobs = jobs.filter(created_at__gte=start)
    if end:
        jobs = jobs.filter(created_at__lte=end)
    rows = (
        jobs.annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(
            jobs=Count("id"),
            charged=Sum("charged_price_wei", filter=Q(billing_status="settled")),
            reserved=Sum("reserved_price_wei", filter=Q(billing_status="reserved")),
            completed=Count("id", filter=Q(status="completed")),
        )
        .order_by("day")
    )
    return [
        {
            "date": row["day"].isoformat(),
            "jobs": row["jobs"],
            "completed": row["completed"],
            "charged_wei": str(int(row["charged"] or 0)),
            "reserved_wei": str(int(row["reserved"] or 0)),
        }
        for row in rows
    ]
