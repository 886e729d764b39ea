"""Reads on jobs."""
from __future__ import annotations

import hashlib
import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import QuerySet, Sum

from billing.ledger import account_for_miner
from jobs.exceptions import JobNotFound
from jobs.models import Job, JobStatus
from marketplace.models import Customer, Miner
from marketplace.paging import decode_cursor, encode_cursor
from marketplace.rows import RowLoader, quoted
from marketplace.shared_cache import cache_get, cache_set
from nodes.selectors import node_capacity_for


def job_get_for_customer(*, customer: Customer, job_id: str) -> Job:
    """Another customer's job is a 404, exactly like a job that does not exist."""
    try:
        return Job.objects.select_related("node__miner", "customer").get(public_id=job_id, customer=customer)
    except Job.DoesNotExist:
        raise JobNotFound(f"no job {job_id}") from None


def job_with_receipt_for_customer(*, customer: Customer, receipt_hash: str) -> Job | None:
    """The customer's job that holds this receipt, with its node; None if none of theirs does."""
    job = Job.objects.select_related("node").filter(customer=customer, receipt_hash=receipt_hash).first()
    return job if job is not None and job.receipt else None


_SNAPSHOT_ROW = RowLoader(Job, "j", leave_out=tuple(
    f.name for f in Job._meta.concrete_fields
    if f.name not in ("id", "public_id", "status", "progress", "status_reason", "result", "error")))


def job_status_for_customer(*, customer: Customer, job_id: str) -> Job:
    """Only what a live stream's first event shows (one table, five columns): every watcher reads it."""
    # written out: the ORM's compiling of it cost more than the read (marketplace.rows)
    sql = (f"SELECT {_SNAPSHOT_ROW.columns} FROM {quoted(Job._meta.db_table)} j "
           "WHERE j.public_id = %s AND j.customer_id = %s")
    with connection.cursor() as cursor:
        cursor.execute(sql, [job_id, customer.pk])
        row = cursor.fetchone()
    if row is None:
        raise JobNotFound(f"no job {job_id}")
    return _SNAPSHOT_ROW.build(row)


def jobs_of_customer(*, customer: Customer, status: str = "", model: str = "", job_id: str = "") -> QuerySet[Job]:
    """The customer's jobs, narrowed by status, by model, and by the start of a job id."""
    jobs = Job.objects.filter(customer=customer)
    if status:
        jobs = jobs.filter(status=status)
    if model:
        jobs = jobs.filter(model=model)
    if job_id:
        jobs = jobs.filter(public_id__startswith=job_id)
    return jobs


def jobs_page(*, queryset: QuerySet[Job], limit: int, cursor: str | None) -> tuple[list[Job], int, str | None]:
    """Newest first, keyset-paginated on the primary key: stable while new jobs arrive."""
    total = queryset.count()
    if cursor:
        queryset = queryset.filter(pk__lt=decode_cursor(cursor))
    page = list(queryset.select_related("node__miner").order_by("-pk")[: limit + 1])
    has_more = len(page) > limit
    page = page[:limit]
    return page, total, (encode_cursor(page[-1].pk) if has_more else None)


def model_median_seconds(*, model: str, default: int, sample: int = 50) -> int:
    """The model's median run time over its recent completed jobs."""
    if not model:
        return default
    recent = (
        Job.objects.filter(model=model, status__is=JobStatus.COMPLETED, started_at__isnull=False)
        .order_by("-completed_at")
        .values_list("started_at", "completed_at")[:sample]
    )
    durations = [(done - start).total_seconds() for start, done in recent]
    if not durations:
        return default
    return max(1, round(statistics.median(durations)))


def queue_depth(*, model: str) -> int:
    return Job.objects.filter(model=model, status__is=JobStatus.QUEUED).count()


OUTLOOK_SECONDS = 2


@dataclass(frozen=True)
class ModelOutlook:
    median_seconds: int | None  # None: no recent history
    capacity: int
    queued: int


def model_outlook(*, model: str) -> ModelOutlook:
    """What a submit estimates from: the model's median run, its nodes' slots and its queue.

    At most a couple of seconds old (three queries, once per model per moment, not per submit):
    an estimate, never a decision.
    """
    key = "model-outlook:" + hashlib.sha256(model.encode()).hexdigest()[:32]
    cached = cache_get(key)
    if isinstance(cached, ModelOutlook):
        return cached
    outlook = ModelOutlook(
        median_seconds=model_median_seconds(model=model, default=0) or None,
        capacity=node_capacity_for(model=model),
        queued=queue_depth(model=model),
    )
    cache_set(key, outlook, OUTLOOK_SECONDS)
    return outlook


def usage_by_day(*, customer: Customer, start: datetime | None, end: datetime | None) -> list[dict]:
    """Per-day totals of the customer's jobs: how many, what was charged, what is still held.

    Summed in Python: wei amounts are exact integers, which SQLite cannot sum.
    """
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


def node_payouts(*, miner: Miner) -> dict[int, int]:
    """What each of the miner's nodes has been paid, all time: node pk → wei."""
    rows = (Job.objects.filter(node__miner=miner, billing_status="settled").values("node_id")
            .annotate(paid=Sum("payout_price_wei")))
    return {row["node_id"]: int(row["paid"] or 0) for row in rows}


def miner_earnings(*, miner: Miner, start: datetime | None = None, end: datetime | None = None) -> dict:
    """What the miner's nodes were paid, by day and job by job (newest first, the last 100)."""
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
