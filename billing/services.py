"""Money services: quotes, reservations, settlement, deposits and refunds, all in integer wei.

Billing knows nothing of jobs: it takes values (a customer, an API key, amounts, a
duration, the pricing inputs, a posting key) and returns figures. ``jobs.services.money``
reads a Job, calls these, and writes the Job's own money columns.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from billing import ledger
from billing.exceptions import (
    AlreadyPosted,
    ConcurrentJobLimit,
    InsufficientFunds,
    KeyBudgetExceeded,
    PriceAboveMaximum,
    SpendCapExceeded,
    WithdrawalDecided,
    WithdrawalRefused,
)
from billing.ledger import EXTERNAL, PLATFORM, KeyMove, Move, customer_owner, miner_owner
from billing.models import Account, KeySpend, LedgerAdjustment, LedgerTransaction, PricingPolicy, Withdrawal
from billing.selectors import pricing_policy_current, pricing_policy_forget, pricing_policy_remember, pricing_policy_version

SETTLED, RELEASED = "settled", "released"
# a refusal whose cause was gone when it was looked at (the row changed meanwhile) is tried again
MOVE_TRIES = 3


@dataclass(frozen=True)
class Quote:
    """What a job is expected to cost (``price_wei``, the customer's ``estimated_cost``) and the
    most it can cost: its whole timeout at the same rates (``worst_case_wei``)."""

    policy_version: int
    price_wei: int
    rate_wei_per_second: int
    expected_seconds: int
    worst_case_wei: int
    # the least any node could charge for it (one second on the cheapest), and the dearest rate
    # its reservation covers (a node that asks more is not given the job)
    least_wei: int = 0
    rate_ceiling_wei: int | None = None


def _gpu_class(gpu_type: str, gpu_count: int) -> str:
    """The key a class is priced under: "cpu" without a GPU; a GPU type not listed takes the
    policy's default rate and has no bounds."""
    return "cpu" if gpu_count == 0 else gpu_type


def _rate(policy: PricingPolicy, gpu_type: str, gpu_count: int) -> int:
    """The policy's own rate for a GPU class: what a node that asks nothing charges."""
    rates = policy.gpu_rates_wei or {}
    key = _gpu_class(gpu_type, gpu_count)
    return int(rates[key]) if key in rates else int(policy.default_rate_wei)


def quoted_rate(*, policy_version: int | None, gpu_type: str, gpu_count: int) -> int:
    """The policy's rate for a class, in the version a job was quoted under."""
    return _rate(pricing_policy_version(policy_version), gpu_type, gpu_count)


def price_bounds(policy: PricingPolicy, gpu_type: str, gpu_count: int) -> tuple[int, int | None]:
    """(floor, ceiling or None) of what a node of this class may ask per GPU-second."""
    bounds = (policy.node_price_bounds_wei or {}).get(_gpu_class(gpu_type, gpu_count))
    if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
        return 0, None
    floor, ceiling = (int(b) if str(b).isdigit() else None for b in bounds)
    return floor or 0, ceiling


def node_rate(*, policy: PricingPolicy, gpu_type: str, gpu_count: int, asked_wei: int) -> int:
    """What a node charges per GPU-second: the price its miner asks, held within the policy's
    bounds for its GPU class; a node that asks nothing charges the policy's rate for its class."""
    rate = int(asked_wei) or _rate(policy, gpu_type, gpu_count)
    floor, ceiling = price_bounds(policy, gpu_type, gpu_count)
    return max(floor, rate if ceiling is None else min(rate, ceiling))


def price_at(*, policy: PricingPolicy, model: str, rate_wei: int, gpu_count: int, priority: str,
             duration_ms: int) -> int:
    """base(model) + rate × max(gpu_count, 1) × seconds × priority multiplier, at least the minimum."""
    multiplier = int((policy.priority_multipliers_bps or {}).get(priority, 10000))
    time_price = int(rate_wei) * max(gpu_count, 1) * max(duration_ms, 0) * multiplier // (1000 * 10000)
    base = int((policy.model_base_prices_wei or {}).get(model, 0))
    return max(int(policy.minimum_charge_wei), base + time_price)


def quote_job(*, model: str = "", gpu_type: str, gpu_count: int, priority: str, expected_seconds: int,
              timeout_seconds: int, policy: PricingPolicy | None = None,
              rates: tuple[int, int] | None = None) -> Quote:
    """``rates``: the cheapest and the dearest rate among the nodes that could run the job; the
    quote is its expected run on the cheapest, the worst case its whole timeout on the dearest.
    None (no such node yet): the policy's rate for the class it asks for, and the most a node
    of that class may ask for the worst case."""
    policy = policy or pricing_policy_current()
    seconds = max(expected_seconds, 1)
    if rates is None:
        _, ceiling = price_bounds(policy, gpu_type, gpu_count)
        rates = (_rate(policy, gpu_type, gpu_count), max(_rate(policy, gpu_type, gpu_count), ceiling or 0))
    cheapest, dearest = rates

    def price(rate: int, duration_s: int) -> int:
        return price_at(policy=policy, model=model, rate_wei=rate, gpu_count=gpu_count, priority=priority,
                        duration_ms=duration_s * 1000)

    expected = price(cheapest, seconds)
    return Quote(
        policy_version=policy.version,
        price_wei=expected,
        rate_wei_per_second=cheapest,
        expected_seconds=seconds,
        worst_case_wei=max(expected, price(dearest, timeout_seconds)),
        least_wei=price(cheapest, 1),
        rate_ceiling_wei=dearest,
    )


def reservation_wei(*, quote: Quote, max_price_wei: int | None) -> int:
    """What a job holds while it may run: its worst case, never more than the customer allowed.

    Holding only the expected cost capped every charge at it: a job that ran longer than its
    model's median was billed as a short one and its miner underpaid (issue 13).
    """
    return quote.worst_case_wei if max_price_wei is None else min(quote.worst_case_wei, int(max_price_wei))


def pricing_policy_publish(*, created_by=None, **fields) -> PricingPolicy:
    """Publish a new version; earlier versions stay as they were, for the jobs that used them."""
    for name in ("node_price_bounds_wei", "model_base_prices_wei"):  # an empty admin box means none
        if name in fields and fields[name] is None:
            fields[name] = {}
    for _ in range(3):
        try:
            with transaction.atomic():
                latest = PricingPolicy.objects.aggregate(v=Max("version"))["v"] or 0
                policy = PricingPolicy.objects.create(version=latest + 1, created_by=created_by, **fields)
                # this process quotes from the new version as soon as it is committed
                pricing_policy_forget()
                transaction.on_commit(lambda: pricing_policy_remember(policy))
                return policy
        except IntegrityError:  # two staff published at once; take the next number
            continue
    raise RuntimeError("could not allocate a pricing policy version")


# --- a job's money ---------------------------------------------------------------------


def price_within_maximum(*, quote: Quote, max_price_wei: int | None) -> None:
    """Refuse a ``max_price_wei`` below the least the cheapest node could charge for the job (its
    first second), naming that node's rate; above it, the job runs as long as it pays for."""
    if max_price_wei is not None and quote.least_wei > max_price_wei:
        raise PriceAboveMaximum(
            f"the cheapest node that can run this job charges {quote.rate_wei_per_second} wei per GPU-second: "
            f"{quote.least_wei} wei for its first second, above your max_price_wei of {max_price_wei}",
            rate_wei_per_second=str(quote.rate_wei_per_second),
        )


def funds_reserve(*, customer, api_key, amount: int, posting_key: str, month: date, job_id: int | None = None) -> None:
    """Hold ``amount`` on the customer's account within every limit, or raise and hold nothing.

    Limits are exact under concurrency without a lock held across statements: each
    is a counter moved by the same conditional statement that checks it. The API
    key's row (its open jobs, and what its jobs cost or may still cost, against
    ``max_concurrent_jobs`` and ``budget_wei``) moves first, then the customer's
    account, which holds the amount only if it is available, the customer's open
    jobs stay within ``concurrent_job_limit`` and this month's spending within
    ``monthly_spend_cap_wei``; on PostgreSQL both rows and their entries are one
    statement (``ledger.moves_apply``). A refused row changes nothing; the error
    raised makes the caller's transaction roll the rest back. Only then are the rows
    read, to say which limit refused (in the order they were always reported: the
    customer's job limit, the key's, the monthly cap, the key's budget, the balance).

    Must run inside the caller's transaction (the one that creates the job).
    """
    cap = None if customer.monthly_spend_cap_wei is None else int(customer.monthly_spend_cap_wei)
    steps: list = [Move(customer_owner(customer.pk), available=-amount, reserved=amount, jobs=1, spent=amount,
                        month=month, new_month=True, job_limit=customer.concurrent_job_limit, spend_cap=cap)]
    if api_key is not None:
        budget = None if api_key.budget_wei is None else int(api_key.budget_wei)
        steps.insert(0, KeyMove(api_key.pk, jobs=1, spent=amount, job_limit=api_key.max_concurrent_jobs, budget=budget))
    with transaction.atomic(savepoint=False):
        posting_id, refused = ledger.posting_apply(kind=LedgerTransaction.Kind.RESERVE, key=posting_key, steps=steps,
                                                   job_id=job_id)
        done = 0
        for _ in range(MOVE_TRIES):
            if refused is None:
                return
            done += refused
            # the rows refused; read them to say why (the key's row passed if it came before)
            key_passed = api_key is not None and done > 0
            error = _reserve_refusal(customer=customer, api_key=None if key_passed else api_key, amount=amount,
                                     month=month)
            if error is not None:
                raise error
            refused = ledger.moves_apply(posting_id, steps[done:])
        raise InsufficientFunds("the account changed while this job was being reserved; try again")


def _reserve_refusal(*, customer, api_key, amount: int, month: date):
    """Why a reservation was refused, in the order the limits are reported; None if nothing refuses it now.

    ``api_key`` is None when the key's row already took the reservation (its limits passed).
    """
    row = Account.objects.filter(customer_id=customer.pk).values(
        "available_wei", "active_jobs", "spend_month", "month_spent_wei").first() or {
        "available_wei": 0, "active_jobs": 0, "spend_month": None, "month_spent_wei": 0}
    key = None
    if api_key is not None:
        key = KeySpend.objects.filter(pk=api_key.pk).values("active_jobs", "spent_wei").first() or {
            "active_jobs": 0, "spent_wei": 0}
    limit = customer.concurrent_job_limit
    if row["active_jobs"] + 1 > limit:
        return ConcurrentJobLimit(
            f"you already have {limit} jobs queued or running, the most your account allows; wait for one to finish"
        )
    key_limit = api_key.max_concurrent_jobs if api_key is not None else None
    if key_limit is not None and key["active_jobs"] + 1 > key_limit:
        return ConcurrentJobLimit(f"this API key already has {key_limit} jobs queued or running, the most it is allowed")
    cap = customer.monthly_spend_cap_wei
    spent = int(row["month_spent_wei"]) if row["spend_month"] == month else 0
    if cap is not None and spent + amount > cap:
        return SpendCapExceeded(
            f"this job ({amount} wei) would take this month's spending to {spent + amount} wei, over the cap of {cap} wei"
        )
    if api_key is not None and api_key.budget_wei is not None and int(key["spent_wei"]) + amount > api_key.budget_wei:
        return KeyBudgetExceeded(
            f"this job ({amount} wei) would take this API key's spending to {int(key['spent_wei']) + amount} wei, "
            f"over its budget of {api_key.budget_wei} wei"
        )
    if int(row["available_wei"]) < amount:
        return InsufficientFunds(f"not enough available balance: {max(int(row['available_wei']), 0)} wei available")
    return None


@dataclass(frozen=True)
class Settlement:
    """How a bill closes: what the customer is charged, the miner paid and the platform keeps.

    The rest of the reservation (``reserved_wei - charged_wei``) goes back to the customer.
    """

    status: str  # SETTLED or RELEASED
    reserved_wei: int
    charged_wei: int = 0
    payout_wei: int = 0
    fee_wei: int = 0


def settlement_price(*, reserved_wei: int, duration_ms: int, policy_version: int | None, model: str,
                     gpu_type: str, gpu_count: int, priority: str, rate_wei: int | None = None) -> Settlement:
    """Charge ``duration_ms`` at the node's ``rate_wei`` (the policy's rate for the class asked
    for, for a job given out before nodes had prices), with the base price and multipliers of
    the version quoted, never more than was reserved."""
    policy = pricing_policy_version(policy_version)
    rate = _rate(policy, gpu_type, gpu_count) if rate_wei is None else int(rate_wei)
    charged = min(reserved_wei, price_at(policy=policy, model=model, rate_wei=rate, gpu_count=gpu_count,
                                         priority=priority, duration_ms=duration_ms))
    fee = charged * policy.platform_fee_bps // 10000
    return Settlement(status=SETTLED, reserved_wei=reserved_wei, charged_wei=charged, payout_wei=charged - fee,
                      fee_wei=fee)


def seconds_within(*, reserved_wei: int, policy_version: int | None, model: str, gpu_count: int, priority: str,
                   rate_wei: int) -> int | None:
    """The whole seconds of running that ``reserved_wei`` pays for at ``rate_wei`` (None: any
    number, the rate being zero). A job is stopped there: it never runs longer than it can pay for."""
    policy = pricing_policy_version(policy_version)
    multiplier = int((policy.priority_multipliers_bps or {}).get(priority, 10000))
    per_second = int(rate_wei) * max(gpu_count, 1) * multiplier // 10000
    if per_second <= 0:
        return None
    base = int((policy.model_base_prices_wei or {}).get(model, 0))
    return max(0, (int(reserved_wei) - base) // per_second)


def settlement_release(*, reserved_wei: int) -> Settlement:
    return Settlement(status=RELEASED, reserved_wei=reserved_wei)


def funds_close(*, settlement: Settlement, customer_id: int, api_key_id: int | None, miner_id: int | None,
                month: date, posting_key: str, job_id: int | None = None, memo: str = "") -> None:
    """Post a settlement: release the reservation, charge, pay the miner, keep the fee; or ``AlreadyPosted``.

    ``month`` is the month the reservation counted in (its spending moves back there).
    One statement per row, in the ledger's row order; the rows every settlement shares
    (the miner's, the platform's) come last, so they are held the shortest.
    """
    reserved, charged = settlement.reserved_wei, settlement.charged_wei
    moves = [Move(customer_owner(customer_id), reserved=-reserved, available=reserved - charged, jobs=-1,
                  spent=charged - reserved, month=month)]
    if settlement.status == SETTLED:
        if miner_id is None:
            raise ValueError("a settlement pays a miner")
        moves += [Move(miner_owner(miner_id), available=settlement.payout_wei),
                  Move(PLATFORM, available=settlement.fee_wei)]
    kind = LedgerTransaction.Kind.SETTLE if settlement.status == SETTLED else LedgerTransaction.Kind.RELEASE
    steps = [KeyMove(api_key_id, jobs=-1, spent=charged - reserved)] if api_key_id is not None else []
    with transaction.atomic(savepoint=False):
        try:
            _, refused = ledger.posting_apply(kind=kind, key=posting_key, steps=steps + moves, job_id=job_id, memo=memo)
        except AlreadyPosted:
            used = True  # raised below, outside the block: a used key spoils no transaction
        else:
            used = False
            if refused is not None:
                raise InsufficientFunds(f"the reservation of {reserved} wei is not held on the account")
    if used:
        raise AlreadyPosted(posting_key)


# --- deposits and refunds ---------------------------------------------------------------


def funds_deposit(*, customer, amount: int, reason: str, created_by=None, key: str | None = None) -> LedgerAdjustment:
    return _adjust(customer=customer, kind=LedgerAdjustment.Kind.DEPOSIT, amount=amount, reason=reason,
                   created_by=created_by, key=key)


def funds_refund(*, customer, amount: int, reason: str, job=None, created_by=None,
                 key: str | None = None) -> LedgerAdjustment:
    return _adjust(customer=customer, kind=LedgerAdjustment.Kind.REFUND, amount=amount, reason=reason,
                   created_by=created_by, job=job, key=key)


# the most one deposit or refund moves (10^18 ETH): far beyond any real one, and far enough
# below the 78 digits a wei column holds that no sum of them can overflow a balance
MAX_ADJUSTMENT_WEI = 10**36


def adjustment_check(*, amount: int, reason: str) -> None:
    """What a deposit or refund must be; ValueError, in words staff can act on, if it is not."""
    if amount <= 0:
        raise ValueError("an amount must be a positive number of wei")
    if amount > MAX_ADJUSTMENT_WEI:
        raise ValueError(f"an amount may be at most {MAX_ADJUSTMENT_WEI} wei (10^18 ETH) at a time")
    if not reason.strip():
        raise ValueError("say why: staff money movements keep their reason")


@transaction.atomic
def _adjust(*, customer, kind: str, amount: int, reason: str, created_by=None, job=None,
            key: str | None = None) -> LedgerAdjustment:
    adjustment_check(amount=amount, reason=reason)
    adjustment = LedgerAdjustment.objects.create(
        customer=customer, kind=kind, amount_wei=amount, reason=reason, job=job, created_by=created_by
    )
    deposit = kind == LedgerAdjustment.Kind.DEPOSIT
    adjustment.transaction_id = ledger.post(
        kind=LedgerTransaction.Kind.DEPOSIT if deposit else LedgerTransaction.Kind.REFUND,
        key=key or f"{kind}:{adjustment.pk}",
        job_id=getattr(job, "pk", job),
        memo=reason,
        created_by=created_by,
        moves=[Move(customer_owner(customer.pk), available=amount), Move(EXTERNAL if deposit else PLATFORM,
                                                                         available=-amount)],
    )
    adjustment.save(update_fields=["transaction"])
    return adjustment


# --- withdrawals ---------------------------------------------------------------------------

ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


def withdrawal_request(*, miner, amount: int, address: str) -> Withdrawal:
    """Hold ``amount`` of the miner's available earnings for a payout to ``address``, or refuse
    and hold nothing. The hold is one conditional statement on the miner's row: requests at
    once never hold more than is available."""
    if not ADDRESS.match(address or ""):
        raise WithdrawalRefused("address must be an Ethereum address: 0x and 40 hex digits")
    minimum = int(pricing_policy_current().minimum_withdrawal_wei)
    if not max(minimum, 1) <= amount <= MAX_ADJUSTMENT_WEI:
        raise WithdrawalRefused(f"amount_wei must be at least {max(minimum, 1)} wei (the policy's minimum)"
                                f" and at most {MAX_ADJUSTMENT_WEI}")
    with transaction.atomic():
        withdrawal = Withdrawal.objects.create(miner=miner, amount_wei=amount, address=address)
        ledger.post(kind=LedgerTransaction.Kind.HOLD, key=f"withdrawal-hold:{withdrawal.pk}",
                    memo=f"withdrawal {withdrawal.pk} to {address}",
                    moves=[Move(miner_owner(miner.pk), available=-amount, reserved=amount)])
    return withdrawal


def withdrawal_pay(*, withdrawal: Withdrawal, payout_reference: str, decided_by=None) -> Withdrawal:
    """Staff sent the money: the hold leaves the marketplace (a WITHDRAWAL to the outside world)."""
    if not payout_reference.strip():
        raise WithdrawalRefused("say which transfer paid it: the payout reference (a transaction hash)")
    amount = int(withdrawal.amount_wei)
    return _withdrawal_decide(withdrawal, Withdrawal.Status.PAID, decided_by, dict(payout_reference=payout_reference),
                              kind=LedgerTransaction.Kind.WITHDRAWAL, memo=payout_reference,
                              moves=[Move(miner_owner(withdrawal.miner_id), reserved=-amount),
                                     Move(EXTERNAL, available=amount)])


def withdrawal_reject(*, withdrawal: Withdrawal, reason: str, decided_by=None) -> Withdrawal:
    """Staff will not pay it: the hold goes back to the miner's available earnings."""
    amount = int(withdrawal.amount_wei)
    return _withdrawal_decide(withdrawal, Withdrawal.Status.REJECTED, decided_by, dict(reason=reason[:300]),
                              kind=LedgerTransaction.Kind.RELEASE, memo=reason[:300],
                              moves=[Move(miner_owner(withdrawal.miner_id), available=amount, reserved=-amount)])


def _withdrawal_decide(withdrawal: Withdrawal, status: str, decided_by, fields: dict, *, kind: str, memo: str,
                       moves: list) -> Withdrawal:
    """The request's row is the claim: of two staff deciding at once, one moves the money."""
    with transaction.atomic():
        decided = Withdrawal.objects.filter(pk=withdrawal.pk, status=Withdrawal.Status.REQUESTED).update(
            status=status, decided_at=timezone.now(), decided_by=decided_by, **fields)
        if decided != 1:
            raise WithdrawalDecided(f"withdrawal {withdrawal.pk} was decided already")
        ledger.post(kind=kind, key=f"withdrawal-{status}:{withdrawal.pk}", memo=memo, created_by=decided_by,
                    moves=moves)
    withdrawal.refresh_from_db()
    return withdrawal
