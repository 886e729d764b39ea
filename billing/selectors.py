"""Reads on pricing and money."""
from __future__ import annotations

import time

from django.db import connection

from billing.models import (
    DEFAULT_GPU_RATES_WEI,
    DEFAULT_PRIORITY_MULTIPLIERS_BPS,
    Account,
    LedgerEntry,
    LedgerTransaction,
    PricingPolicy,
    Withdrawal,
)

# How long a process keeps the current policy before reading it again. A version
# published in this process replaces it at once; one published by another process is
# seen within this many seconds (jobs name the version they were quoted under).
POLICY_CACHE_SECONDS = 5.0
_policy_cached: tuple[float, PricingPolicy] | None = None


def pricing_policy_current() -> PricingPolicy:
    """The newest published version; version 1 with the defaults if staff never published one.

    Kept per process for a few seconds, so neither a submit nor a settle reads it in the steady
    state. The defaults row written by a read inside a transaction is not kept: that
    transaction may yet be rolled back.
    """
    global _policy_cached
    cached = _policy_cached
    if cached is not None and time.monotonic() < cached[0]:
        return cached[1]
    policy, created = _pricing_policy_read()
    if not (created and connection.in_atomic_block):
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


def _pricing_policy_read() -> tuple[PricingPolicy, bool]:
    """The newest version, and whether this read wrote the defaults' row."""
    policy = PricingPolicy.objects.order_by("-version").first()
    if policy is not None:
        return policy, False
    return PricingPolicy.objects.get_or_create(
        version=1,
        defaults={
            "gpu_rates_wei": DEFAULT_GPU_RATES_WEI,
            "priority_multipliers_bps": DEFAULT_PRIORITY_MULTIPLIERS_BPS,
            "note": "defaults",
        },
    )


# what each posting is, seen from the account it moved
STATEMENT_KINDS = {
    LedgerTransaction.Kind.DEPOSIT: "deposit",
    LedgerTransaction.Kind.RESERVE: "reservation",
    LedgerTransaction.Kind.SETTLE: "charge",
    LedgerTransaction.Kind.RELEASE: "release",
    LedgerTransaction.Kind.REFUND: "refund",
    LedgerTransaction.Kind.WITHDRAWAL: "withdrawal",
}
# ... and from a miner's: a settlement pays it, a hold keeps a withdrawal until staff decide
MINER_STATEMENT_KINDS = {**STATEMENT_KINDS, LedgerTransaction.Kind.SETTLE: "payout",
                         LedgerTransaction.Kind.HOLD: "withdrawal_hold"}


def account_statement(*, account: Account | None, limit: int, before: int | None = None,
                      kinds: dict = STATEMENT_KINDS) -> tuple[list[dict], int | None]:
    """Every posting that moved ``account``, newest first, keyset-paged on the posting: what it
    was, its job, when, and what it did to the account's available and reserved wei (a
    settlement releases the reservation and charges: its ``amount_wei`` is the charge).
    Returns the page and the key to continue below (None: the last page)."""
    if account is None:
        return [], None
    postings = LedgerTransaction.objects.filter(entries__account=account).distinct().order_by("-pk")
    if before is not None:
        postings = postings.filter(pk__lt=before)
    page = list(postings.values("pk", "kind", "created_at", "job__public_id")[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    moved: dict[int, dict[str, int]] = {}
    for entry in LedgerEntry.objects.filter(account=account, transaction_id__in=[p["pk"] for p in page]).values(
            "transaction_id", "bucket", "amount_wei"):
        buckets = moved.setdefault(entry["transaction_id"], {})
        buckets[entry["bucket"]] = buckets.get(entry["bucket"], 0) + int(entry["amount_wei"])
    rows = []
    for posting in page:
        buckets = moved.get(posting["pk"], {})
        available, reserved = buckets.get(LedgerEntry.Bucket.AVAILABLE, 0), buckets.get(LedgerEntry.Bucket.RESERVED, 0)
        rows.append({
            "kind": kinds.get(posting["kind"], posting["kind"]),
            "job_id": posting["job__public_id"],
            "amount_wei": str(available + reserved),
            "available_change_wei": str(available),
            "reserved_change_wei": str(reserved),
            "created_at": posting["created_at"],
        })
    return rows, (page[-1]["pk"] if more else None)


def withdrawal_fields(withdrawal) -> dict:
    """A withdrawal as its miner sees it (the API and the dashboard)."""
    return {
        "withdrawal_id": withdrawal.pk,
        "amount_wei": str(withdrawal.amount_wei),
        "address": withdrawal.address,
        "status": withdrawal.status,
        "payout_reference": withdrawal.payout_reference or None,
        "reason": withdrawal.reason or None,
        "created_at": withdrawal.created_at,
        "decided_at": withdrawal.decided_at,
    }


def miner_withdrawals(*, miner, limit: int = 100) -> list[Withdrawal]:
    return list(Withdrawal.objects.filter(miner=miner).order_by("-pk")[:limit])
