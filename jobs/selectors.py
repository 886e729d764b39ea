"""Reads on jobs."""
from __future__ import annotations

import base64
import hashlib
import statistics
from dataclasses import dataclass

from django.db.models import QuerySet

from jobs.exceptions import InvalidQuery, JobNotFound
from jobs.models import ACTIVE, Job, JobStatus
from marketplace.models import Customer
from marketplace.shared_cache import cache_get, cache_set
from nodes.selectors import node_capacity_for


def job_get_for_customer(*, customer: Customer, job_id: str) -> Job:
    """Another customer's job is a 404, exactly like a job that does not exist."""
    try:
        return Job.objects.select_related("node__miner", "customer").get(public_id=job_id, customer=customer)
    except Job.DoesNotExist:
        raise JobNotFound(f"no job {job_id}") from None


def jobs_recent_for_customer(*, customer: Customer, limit: int = 50) -> list[Job]:
    return list(Job.objects.filter(customer=customer).order_by("-id")[:limit])


def jobs_active_count(*, customer: Customer, api_key=None) -> int:
    jobs = Job.objects.filter(customer=customer, status__in=ACTIVE)
    if api_key is not None:
        jobs = jobs.filter(api_key=api_key)
    return jobs.count()


def encode_cursor(pk: int) -> str:
    return base64.urlsafe_b64encode(str(pk).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (ValueError, UnicodeDecodeError):
        raise InvalidQuery("cursor is not one this API gave out") from None


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
        Job.objects.filter(model=model, status=JobStatus.COMPLETED, started_at__isnull=False)
        .order_by("-completed_at")
        .values_list("started_at", "completed_at")[:sample]
    )
    durations = [(done - start).total_seconds() for start, done in recent]
    if not durations:
        return default
    return max(1, round(statistics.median(durations)))


def queue_depth(*, model: str) -> int:
    return Job.objects.filter(model=model, status=JobStatus.QUEUED).count()


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
