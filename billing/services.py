"""Money services: quotes, reservations, settlement, deposits and refunds, all in integer wei."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone as dt_timezone

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from billing import ledger
from billing.fields import wei_total
from billing.exceptions import AlreadyPosted, KeyBudgetExceeded, PriceAboveMaximum, SpendCapExceeded
from billing.ledger import AVAILABLE, RESERVED, Entry
from billing.models import LedgerAdjustment, LedgerTransaction, PricingPolicy
from billing.selectors import pricing_policy_current


@dataclass(frozen=True)
class Quote:
    policy_version: int
    price_wei: int
    rate_wei_per_second: int
    expected_seconds: int


def _rate(policy: PricingPolicy, gpu_type: str, gpu_count: int) -> int:
    rates = policy.gpu_rates_wei or {}
    key = "cpu" if gpu_count == 0 else gpu_type
    return int(rates[key]) if key in rates else int(policy.default_rate_wei)


def price_for(*, policy: PricingPolicy, model: str, gpu_type: str, gpu_count: int, priority: str,
              duration_ms: int) -> int:
    """base(model) + rate(gpu_type) × max(gpu_count, 1) × seconds × priority multiplier, at least the minimum."""
    multiplier = int((policy.priority_multipliers_bps or {}).get(priority, 10000))
    time_price = _rate(policy, gpu_type, gpu_count) * max(gpu_count, 1) * max(duration_ms, 0) * multiplier // (1000 * 10000)
    base = int((policy.model_base_prices_wei or {}).get(model, 0))
    return max(int(policy.minimum_charge_wei), base + time_price)


def quote_job(*, model: str = "", gpu_type: str, gpu_count: int, priority: str, expected_seconds: int,
              policy: PricingPolicy | None = None) -> Quote:
    policy = policy or pricing_policy_current()
    seconds = max(expected_seconds, 1)
    return Quote(
        policy_version=policy.version,
        price_wei=price_for(policy=policy, model=model, gpu_type=gpu_type, gpu_count=gpu_count,
                            priority=priority, duration_ms=seconds * 1000),
        rate_wei_per_second=_rate(policy, gpu_type, gpu_count),
        expected_seconds=seconds,
    )


def pricing_policy_publish(*, created_by=None, **fields) -> PricingPolicy:
    """Publish a new version; earlier versions stay as they were, for the jobs that used them."""
    for _ in range(3):
        try:
            with transaction.atomic():
                latest = PricingPolicy.objects.aggregate(v=Max("version"))["v"] or 0
                return PricingPolicy.objects.create(version=latest + 1, created_by=created_by, **fields)
        except IntegrityError:  # two staff published at once; take the next number
            continue
    raise RuntimeError("could not allocate a pricing policy version")


# --- spending limits -------------------------------------------------------------------


def _month_start() -> datetime:
    now = timezone.now()
    return datetime(now.year, now.month, 1, tzinfo=dt_timezone.utc)


def _committed(jobs) -> int:
    """What jobs cost or may still cost: charged when settled, held while reserved."""
    return wei_total(jobs.filter(billing_status="settled"), "charged_price_wei") + wei_total(
        jobs.filter(billing_status="reserved"), "reserved_price_wei"
    )


def spending_check(*, customer, api_key, amount: int) -> None:
    """Refuse a reservation that would pass the customer's monthly cap or the key's budget."""
    from jobs.models import Job

    if customer.monthly_spend_cap_wei is not None:
        spent = _committed(Job.objects.filter(customer=customer, created_at__gte=_month_start()))
        if spent + amount > customer.monthly_spend_cap_wei:
            raise SpendCapExceeded(
                f"this job ({amount} wei) would take this month's spending to {spent + amount} wei, "
                f"over the cap of {customer.monthly_spend_cap_wei} wei"
            )
    if api_key is not None and api_key.budget_wei is not None:
        spent = _committed(Job.objects.filter(api_key=api_key))
        if spent + amount > api_key.budget_wei:
            raise KeyBudgetExceeded(
                f"this job ({amount} wei) would take this API key's spending to {spent + amount} wei, "
                f"over its budget of {api_key.budget_wei} wei"
            )


def price_within_maximum(*, quote_wei: int, max_price_wei: int | None) -> None:
    if max_price_wei is not None and quote_wei > max_price_wei:
        raise PriceAboveMaximum(f"the quote is {quote_wei} wei, above your max_price_wei of {max_price_wei}")


# --- a job's money ---------------------------------------------------------------------


def funds_reserve(*, job, amount: int) -> None:
    """Hold the quote on the customer's account; called inside the submit transaction."""
    account = ledger.account_for_customer(job.customer)
    ledger.post(
        kind=LedgerTransaction.Kind.RESERVE,
        key=f"reserve:{job.pk}",
        job=job,
        entries=[Entry(account, AVAILABLE, -amount), Entry(account, RESERVED, amount)],
    )


def job_billing_close(*, job) -> None:
    """Settle a completed job with a verified receipt; release everything for any other end.

    Runs in the transaction that ends the job. A second call (a receipt delivered
    twice, a redelivered message) finds the job closed and the posting key used.
    """
    from jobs.models import BillingStatus, Job, JobStatus

    if job.billing_status != BillingStatus.RESERVED:
        return
    reserved = int(job.reserved_price_wei)
    customer_account = ledger.account_for_customer(job.customer)
    settle = job.status == JobStatus.COMPLETED and job.receipt_verified and job.node_id is not None
    if settle:
        policy = PricingPolicy.objects.filter(version=job.policy_version).first() or pricing_policy_current()
        duration_ms = int(((job.receipt or {}).get("body") or {}).get("duration_ms", "0") or 0)
        charged = min(reserved, price_for(policy=policy, model=job.model, gpu_type=job.gpu_type,
                                          gpu_count=job.gpu_count, priority=job.priority, duration_ms=duration_ms))
        fee = charged * policy.platform_fee_bps // 10000
        payout = charged - fee
        closed = Job.objects.filter(pk=job.pk, billing_status=BillingStatus.RESERVED).update(
            billing_status=BillingStatus.SETTLED, charged_price_wei=charged, payout_price_wei=payout,
            fee_price_wei=fee,
        )
        entries = [
            Entry(customer_account, RESERVED, -reserved),
            Entry(customer_account, AVAILABLE, reserved - charged),
            Entry(ledger.account_for_miner(job.node.miner), AVAILABLE, payout),
            Entry(ledger.platform_account(), AVAILABLE, fee),
        ]
        kind, status = LedgerTransaction.Kind.SETTLE, BillingStatus.SETTLED
        job.charged_price_wei, job.payout_price_wei, job.fee_price_wei = charged, payout, fee
    else:
        closed = Job.objects.filter(pk=job.pk, billing_status=BillingStatus.RESERVED).update(
            billing_status=BillingStatus.RELEASED
        )
        entries = [Entry(customer_account, RESERVED, -reserved), Entry(customer_account, AVAILABLE, reserved)]
        kind, status = LedgerTransaction.Kind.RELEASE, BillingStatus.RELEASED
    if closed != 1:
        return  # closed meanwhile by another path: the money moved once already
    try:
        ledger.post(kind=kind, key=f"close:{job.pk}", job=job, entries=entries,
                    memo=f"{job.public_id} {job.status}")
    except AlreadyPosted:
        return
    job.billing_status = status


def funds_deposit(*, customer, amount: int, reason: str, created_by=None, key: str | None = None) -> LedgerAdjustment:
    return _adjust(customer=customer, kind=LedgerAdjustment.Kind.DEPOSIT, amount=amount, reason=reason,
                   created_by=created_by, key=key)


def funds_refund(*, customer, amount: int, reason: str, job=None, created_by=None) -> LedgerAdjustment:
    return _adjust(customer=customer, kind=LedgerAdjustment.Kind.REFUND, amount=amount, reason=reason,
                   created_by=created_by, job=job)


@transaction.atomic
def _adjust(*, customer, kind: str, amount: int, reason: str, created_by=None, job=None,
            key: str | None = None) -> LedgerAdjustment:
    if amount <= 0:
        raise ValueError("an amount must be a positive number of wei")
    if not reason.strip():
        raise ValueError("say why: staff money movements keep their reason")
    adjustment = LedgerAdjustment.objects.create(
        customer=customer, kind=kind, amount_wei=amount, reason=reason, job=job, created_by=created_by
    )
    source = ledger.external_account() if kind == LedgerAdjustment.Kind.DEPOSIT else ledger.platform_account()
    posting = ledger.post(
        kind=LedgerTransaction.Kind.DEPOSIT if kind == LedgerAdjustment.Kind.DEPOSIT else LedgerTransaction.Kind.REFUND,
        key=key or f"{kind}:{adjustment.pk}",
        job=job,
        memo=reason,
        created_by=created_by,
        entries=[Entry(source, AVAILABLE, -amount), Entry(ledger.account_for_customer(customer), AVAILABLE, amount)],
    )
    adjustment.transaction = posting
    adjustment.save(update_fields=["transaction"])
    return adjustment
