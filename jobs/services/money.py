"""The jobs side of a job's money: what billing is told when a job is reserved and closed.

Billing takes values and returns figures (``billing.services``); the Job's own money
columns are written here, each by a guarded update on its billing status.
"""
from __future__ import annotations

from django.db import transaction

from billing.exceptions import AlreadyPosted
from billing.ledger import month_of
from billing.services import (
    SETTLED,
    funds_close,
    funds_reserve,
    settlement_price,
    settlement_release,
)
from jobs.models import TERMINAL, BillingStatus, Job, JobStatus
from marketplace.rows import update_where

__all__ = ["job_billing_close", "job_bills_close_ended", "job_funds_reserve"]


def job_funds_reserve(*, job: Job) -> None:
    """Hold the job's reservation on its customer (and its API key), inside every limit.

    Called in the transaction that creates the job: a refusal raises, and the job goes with it.
    """
    funds_reserve(customer=job.customer, api_key=job.api_key, amount=int(job.reserved_price_wei),
                  posting_key=f"reserve:{job.pk}", month=month_of(job.created_at), job_id=job.pk)


def job_billing_close(*, job: Job) -> None:
    """Settle a completed job with a verified receipt; release everything for any other end.

    Runs in the transaction that ends the job. A second call (a receipt delivered
    twice, a redelivered message) finds the job closed or the posting key used.
    """
    if job.billing_status != BillingStatus.RESERVED:
        return
    reserved = int(job.reserved_price_wei)
    if job.status == JobStatus.COMPLETED and job.receipt_verified and job.node_id is not None:
        duration_ms = int(((job.receipt or {}).get("body") or {}).get("duration_ms", "0") or 0)
        settlement = settlement_price(reserved_wei=reserved, duration_ms=duration_ms, policy_version=job.policy_version,
                                      model=job.model, gpu_type=job.gpu_type, gpu_count=job.gpu_count,
                                      priority=job.priority)
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
    for job in Job.objects.filter(customer=customer, status__in=TERMINAL,
                                  billing_status=BillingStatus.RESERVED).select_related("node")[:100]:
        with transaction.atomic():
            job_billing_close(job=job)
        closed += 1
    return closed
