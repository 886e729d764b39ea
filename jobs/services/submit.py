"""Submitting a job: validate against the catalogue, check quota, quote, create, place on a free slot."""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, OperationalError, transaction
from django.utils import timezone

from billing.exceptions import ConcurrentJobLimit
from billing.selectors import pricing_policy_current
from billing.services import Quote, node_rate, price_within_maximum, quote_job, reservation_wei
from jobs.exceptions import IdempotencyConflict, QuotaExceeded, UnknownModel
from jobs.live import publish_job_row_after_commit
from jobs.models import BillingStatus, Job, JobEvent, JobStatus
from jobs.selectors import ModelOutlook, model_outlook
from jobs.services.money import job_bills_close_ended, job_funds_reserve
from jobs.tasks import schedule_here
from marketplace.authentication import CustomerPrincipal
from marketplace.rows import insert_instance
from marketplace.shared_cache import cache_get, cache_set
from nodes.gpus import gpu_type_normalize
from nodes.selectors import model_is_known, node_offers_fitting


@dataclass(frozen=True)
class JobSpec:
    model: str
    containers: list[str]
    input: object
    output_config: dict
    gpu_type: str
    gpu_count: int
    min_vram_gb: float
    priority: str
    timeout_seconds: int
    max_price_wei: int | None = None

    def fingerprint(self) -> str:
        canonical = json.dumps(self.__dict__, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()


DEADLOCK_RETRIES = 3


@dataclass(frozen=True)
class Submission:
    job: Job
    created: bool


def _estimate_seconds(outlook: ModelOutlook | None, expected: int) -> int:
    """Time in the queue ahead of it, spread over the nodes that serve it, plus its own run."""
    if outlook is None:
        return expected
    waves = math.ceil(outlook.queued / max(outlook.capacity, 1))
    return waves * expected + expected


KNOWN_SECONDS = 10


def _is_served(spec: JobSpec) -> bool:
    """Some approved node serves it. A yes is remembered briefly (nodes come far more often than
    they go, and a job for a model nobody runs any more just waits and expires); a no never is,
    so a node that enrols is usable at once."""
    key = "served:" + hashlib.sha256(json.dumps([spec.model, spec.containers]).encode()).hexdigest()[:32]
    if cache_get(key):
        return True
    served = model_is_known(model=spec.model, containers=spec.containers)
    if served:
        cache_set(key, True, KNOWN_SECONDS)
    return served


def fitting_rates(*, policy, model: str, containers: list[str], gpu_type: str, gpu_count: int,
                  min_vram_gb: float) -> tuple[int, int] | None:
    """The cheapest and the dearest rate among the approved nodes that could run the job (None:
    none yet; the policy's rate stands in). Read on every submit: a price a miner just changed
    is the price the next job is quoted and reserved at."""
    rates = [node_rate(policy=policy, gpu_type=t, gpu_count=c, asked_wei=asked)
             for t, c, asked in node_offers_fitting(model=model, containers=containers, gpu_type=gpu_type,
                                                    gpu_count=gpu_count, min_vram_gb=min_vram_gb)]
    return (min(rates), max(rates)) if rates else None


@dataclass(frozen=True)
class PricedSpec:
    quote: Quote
    expected_seconds: int
    gpu_type: str
    outlook: ModelOutlook | None


def job_quote(spec: JobSpec) -> PricedSpec:
    """What the job would be quoted and reserved at if submitted now (nothing is created)."""
    policy = pricing_policy_current()
    outlook = model_outlook(model=spec.model) if spec.model else None
    expected = (outlook and outlook.median_seconds) or policy.default_expected_seconds
    gpu_type = gpu_type_normalize(spec.gpu_type) if spec.gpu_type else ""
    quote = quote_job(
        model=spec.model, gpu_type=gpu_type, gpu_count=spec.gpu_count, priority=spec.priority,
        expected_seconds=expected, timeout_seconds=spec.timeout_seconds, policy=policy,
        rates=fitting_rates(policy=policy, model=spec.model, containers=spec.containers, gpu_type=gpu_type,
                            gpu_count=spec.gpu_count, min_vram_gb=spec.min_vram_gb),
    )
    return PricedSpec(quote=quote, expected_seconds=expected, gpu_type=gpu_type, outlook=outlook)


def job_submit(*, principal: CustomerPrincipal, spec: JobSpec, idempotency_key: str | None = None,
               job_id: str | None = None) -> Submission:
    """``job_id``, when given, is the new job's id (a caller that must listen to the job before it exists)."""
    customer = principal.customer
    if idempotency_key:
        existing = Job.objects.filter(customer=customer, idempotency_key=idempotency_key).first()
        if existing is not None:
            return _replay(existing, spec)
    if not _is_served(spec):
        what = f"model {spec.model}" if spec.model else f"containers {', '.join(spec.containers)}"
        raise UnknownModel(f"no node on this marketplace serves {what}")

    priced = job_quote(spec)
    quote = priced.quote
    price_within_maximum(quote=quote, max_price_wei=spec.max_price_wei)
    fields = dict(
        model=spec.model,
        containers=spec.containers,
        input=spec.input,
        output_config=spec.output_config,
        gpu_type=priced.gpu_type,
        gpu_count=spec.gpu_count,
        min_vram_gb=spec.min_vram_gb,
        priority=spec.priority,
        timeout_seconds=spec.timeout_seconds,
        max_price_wei=spec.max_price_wei,
        estimated_time_seconds=_estimate_seconds(priced.outlook, priced.expected_seconds),
        idempotency_key=idempotency_key or None,
        request_hash=spec.fingerprint(),
    )
    if job_id:
        fields["public_id"] = job_id
    try:
        job = job_create_reserved(principal=principal, quote=quote, fields=fields)
    except IntegrityError:
        # a retry with the same Idempotency-Key won the race: answer with its job
        if not idempotency_key:
            raise
        existing = Job.objects.filter(customer=customer, idempotency_key=idempotency_key).first()
        if existing is None:
            raise
        return _replay(existing, spec)
    return Submission(job=job, created=True)


def job_create_reserved(*, principal: CustomerPrincipal, quote, fields: dict, queue_deadline=None) -> Job:
    """Create a queued job with its quote reserved, inside the customer's quotas; enqueue it.

    Raises ``IntegrityError`` when a unique field (an idempotency key, a client-made
    job id) is already taken, for the caller to answer with the job that took it.
    """
    for attempt in range(DEADLOCK_RETRIES):
        try:
            return _create(principal, quote, fields, queue_deadline)
        except ConcurrentJobLimit as exc:
            # a job that ended without closing its bill still counts; close such bills, try once more
            if attempt == 0 and job_bills_close_ended(customer=principal.customer):
                continue
            raise QuotaExceeded(exc.detail) from None
        except OperationalError as exc:
            # PostgreSQL broke a lock cycle by aborting this transaction: nothing was written
            if "deadlock" not in str(exc).lower() or attempt == DEADLOCK_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def _create(principal: CustomerPrincipal, quote, fields: dict, queue_deadline) -> Job:
    customer = principal.customer
    now = timezone.now()
    default_deadline = now + timedelta(seconds=settings.JOB_QUEUE_TIMEOUT_SECONDS)
    with transaction.atomic():
        # no lock is taken here: the reservation, last, checks the balance, the spending
        # limits and the concurrent-job limits in one conditional statement per row
        job = Job(
            customer=customer,
            api_key=principal.api_key,
            estimated_cost_wei=quote.price_wei,
            quoted_price_wei=quote.price_wei,
            reserved_price_wei=reservation_wei(quote=quote, max_price_wei=fields.get("max_price_wei")),
            rate_ceiling_wei=quote.rate_ceiling_wei,
            billing_status=BillingStatus.RESERVED,
            policy_version=quote.policy_version,
            queue_deadline=min(queue_deadline or default_deadline, default_deadline),
            created_at=now,
            **fields,
        )
        # the job and its first event in one statement on PostgreSQL (the ORM's compiling of
        # this insert cost more than the round trip)
        insert_instance(job, JobEvent, {"old_status": "", "new_status": JobStatus.QUEUED, "reason": "submitted",
                                        "created_at": now}, link="job")
        # the quote is held in the same transaction, as its last statements: no funds, no job
        job_funds_reserve(job=job)
        # the queued row goes out before its pass runs: the pass's assignment publishes after it
        publish_job_row_after_commit(job)
        transaction.on_commit(schedule_here)
    return job


def _replay(existing: Job, spec: JobSpec) -> Submission:
    if existing.request_hash != spec.fingerprint():
        raise IdempotencyConflict(
            "this Idempotency-Key was used for a different request; use a new key for a new job"
        )
    return Submission(job=existing, created=False)
