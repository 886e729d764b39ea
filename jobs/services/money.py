"""The jobs side of a job's money: what billing is told when a job is reserved and closed.

Billing takes values and returns figures (``billing.services``); the Job's own money
columns are written here, each by a guarded update on its billing status.
"""
from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from billing.exceptions import AlreadyPosted
from billing.ledger import month_of, posting_exists
from billing.services import (
    SETTLED,
    funds_close,
    funds_refund,
    funds_reserve,
    quoted_rate,
    seconds_within,
    settlement_price,
    settlement_release,
)
from jobs.models import BUDGET_EXHAUSTED, TERMINAL, TIMED_OUT, BillingStatus, Job, JobStatus
from marketplace.rows import update_where

__all__ = ["job_billing_close", "job_bills_close_ended", "job_funds_reserve", "job_refund", "job_refundable",
           "job_run_seconds"]


def job_funds_reserve(*, job: Job) -> None:
    """Hold the job's reservation on its customer (and its API key), inside every limit.

    Called in the transaction that creates the job: a refusal raises, and the job goes with it.
    """
    funds_reserve(customer=job.customer, api_key=job.api_key, amount=int(job.reserved_price_wei),
                  posting_key=f"reserve:{job.pk}", month=month_of(job.created_at), job_id=job.pk)


# what a node's clock may run ahead of ours over one job (its duration is its own monotonic clock)
RECEIPT_CLOCK_SLACK_MS = 1000


def _job_rate(job: Job) -> int:
    """The rate its bill is charged at: its node's at assignment; before that (or for a job given
    out before nodes had prices) the policy's rate for the class it asked for."""
    if job.rate_wei_per_second is not None:
        return int(job.rate_wei_per_second)
    return quoted_rate(policy_version=job.policy_version, gpu_type=job.gpu_type, gpu_count=job.gpu_count)


def job_run_seconds(job: Job) -> int:
    """How long a node may run the job: its timeout, or less when its ``max_price_wei`` capped the
    reservation below the whole timeout; past that the job is stopped (``budget_exhausted``)."""
    if job.max_price_wei is None:
        # its reservation is the whole timeout at the dearest rate it may meet (and a charge never
        # exceeds what was reserved)
        return job.timeout_seconds
    affordable = seconds_within(reserved_wei=int(job.reserved_price_wei), policy_version=job.policy_version,
                                model=job.model, gpu_count=job.gpu_count, priority=job.priority,
                                rate_wei=_job_rate(job))
    return job.timeout_seconds if affordable is None else max(1, min(job.timeout_seconds, affordable))


def _ran_for_customer_ms(job: Job) -> int | None:
    """How long a node ran the job on the customer's account, or None when the job is free.

    Charged: a completion and a failure of the customer's containers on their input, both
    for the duration the node signed; a job the marketplace stopped at its timeout or budget,
    and one the customer cancelled while it ran, for the time from the node's start to the
    stop (measured here, where the stop is decided: the node's own account of a job it is
    told to stop comes later, if ever). Free: a job no node started, and every end a node or
    the marketplace caused (a crash, silence, a receipt that does not verify, an attempt
    lost to failover: those end the attempt, not the job, or end it without a verified receipt).
    """
    if job.node_id is None:
        return None
    if job.receipt_verified and job.status in (JobStatus.COMPLETED, JobStatus.FAILED):
        signed_ms = int(((job.receipt or {}).get("body") or {}).get("duration_ms", "0") or 0)
        if job.assigned_at is None:
            return signed_ms
        # a node cannot have run it longer than it has had it: a signed duration past that is not paid
        held_ms = int((timezone.now() - job.assigned_at).total_seconds() * 1000) + RECEIPT_CLOCK_SLACK_MS
        return min(signed_ms, held_ms)
    stopped_here = job.status == JobStatus.CANCELLED or (
        job.status == JobStatus.FAILED and job.error_code in (TIMED_OUT, BUDGET_EXHAUSTED))
    if stopped_here and job.started_at is not None:
        ran_ms = int((timezone.now() - job.started_at).total_seconds() * 1000)
        return max(0, min(ran_ms, job.timeout_seconds * 1000))
    return None


def job_billing_close(*, job: Job) -> None:
    """Settle what a node ran for the customer (``_ran_for_customer_ms``); release everything else.

    Runs in the transaction that ends the job. A second call (a receipt delivered
    twice, a redelivered message) finds the job closed or the posting key used.
    """
    if job.billing_status != BillingStatus.RESERVED:
        return
    reserved = int(job.reserved_price_wei)
    duration_ms = _ran_for_customer_ms(job)
    if duration_ms is not None:
        settlement = settlement_price(reserved_wei=reserved, duration_ms=duration_ms, policy_version=job.policy_version,
                                      model=job.model, gpu_type=job.gpu_type, gpu_count=job.gpu_count,
                                      priority=job.priority, rate_wei=_job_rate(job))
        miner_id = job.node.miner_id
    else:
        settlement, miner_id = settlement_release(reserved_wei=reserved), None
    status = BillingStatus.SETTLED if settlement.status == SETTLED else BillingStatus.RELEASED
    # the job's row is the claim: of two paths closing one job, one updates it
    closed = update_where(Job, {"billing_status": status, "charged_price_wei": settlement.charged_wei,
                                "payout_price_wei": settlement.payout_wei, "fee_price_wei": settlement.fee_wei},
                          "id = %s AND billing_status = %s", [job.pk, BillingStatus.RESERVED])
    if closed != 1:
        return  # closed meanwhile by another path: the money moved once already
    try:
        funds_close(settlement=settlement, customer_id=job.customer_id, api_key_id=job.api_key_id, miner_id=miner_id,
                    month=month_of(job.created_at), posting_key=f"close:{job.pk}", job_id=job.pk,
                    memo=f"{job.public_id} {job.status}")
    except AlreadyPosted:
        return  # the bill was posted before (its row reopened by hand): money moves once
    job.billing_status = status
    job.charged_price_wei, job.payout_price_wei, job.fee_price_wei = (
        settlement.charged_wei, settlement.payout_wei, settlement.fee_wei)


def job_bills_close_ended(*, customer) -> int:
    """Close the open bills of the customer's jobs that ended without closing them; how many.

    Ending a job closes its bill in the same transaction, so none should exist; a job
    ended behind the services' back would hold a slot of the concurrent-job limit
    (billing counts open bills) until the sweep. A submit refused on that limit calls
    this first and tries once more.
    """
    closed = 0
    for job in Job.objects.filter(customer=customer, status__is_in=TERMINAL,
                                  billing_status__is=BillingStatus.RESERVED).select_related("node")[:100]:
        with transaction.atomic():
            job_billing_close(job=job)
        closed += 1
    return closed


def job_refund(*, job: Job, created_by=None) -> int:
    """Give the customer back what the job was charged; the wei refunded, 0 if it was refunded
    before or charged nothing. Staff's: the platform bears it, the miner keeps the payout. Once
    per job, by the ledger's unique key: two refunds at once give back one charge, with no lock."""
    charged = int(job.charged_price_wei or 0)
    if job.billing_status != BillingStatus.SETTLED or charged <= 0:
        return 0
    try:
        with transaction.atomic():
            funds_refund(customer=job.customer, amount=charged, reason=f"refund of job {job.public_id}", job=job,
                         created_by=created_by, key=_refund_key(job))
    except AlreadyPosted:
        return 0
    return charged


def job_refundable(job: Job) -> bool:
    """Whether staff may refund it now: charged something, and not refunded yet."""
    return (job.billing_status == BillingStatus.SETTLED and int(job.charged_price_wei or 0) > 0
            and not posting_exists(_refund_key(job)))


def _refund_key(job: Job) -> str:
    return f"job-refund:{job.pk}"
