"""The double-entry ledger in wei: every movement is a balanced set of entries, in one transaction.

Conservation: the entries of a posting add up to zero, so the sum of every
account's available and reserved wei is always zero; with the external account
standing for the outside world, customers' balances and reservations plus miners'
payouts plus platform fees equal deposits minus withdrawals at every commit.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, transaction

from billing.exceptions import AlreadyPosted, InsufficientFunds
from billing.fields import wei_total
from billing.models import Account, LedgerEntry, LedgerTransaction

AVAILABLE, RESERVED = LedgerEntry.Bucket.AVAILABLE, LedgerEntry.Bucket.RESERVED
# only these may go below zero: the outside world (deposits), and the platform (refunds it absorbs)
MAY_GO_NEGATIVE = {Account.Kind.EXTERNAL, Account.Kind.PLATFORM}


@dataclass(frozen=True)
class Entry:
    account: Account
    bucket: str
    amount: int


def account_for_customer(customer) -> Account:
    account, _ = Account.objects.get_or_create(customer=customer, defaults={"kind": Account.Kind.CUSTOMER})
    return account


def account_for_miner(miner) -> Account:
    account, _ = Account.objects.get_or_create(miner=miner, defaults={"kind": Account.Kind.MINER})
    return account


def _singleton(kind: str) -> Account:
    try:
        return Account.objects.get(kind=kind)
    except Account.DoesNotExist:
        try:
            with transaction.atomic():
                return Account.objects.create(kind=kind)
        except IntegrityError:  # made by another process meanwhile
            return Account.objects.get(kind=kind)


def platform_account() -> Account:
    return _singleton(Account.Kind.PLATFORM)


def external_account() -> Account:
    return _singleton(Account.Kind.EXTERNAL)


def post(*, kind: str, key: str, entries: list[Entry], job=None, memo: str = "", created_by=None) -> LedgerTransaction:
    """Post one balanced movement, or nothing: raises ``AlreadyPosted`` for a key used before
    and ``InsufficientFunds`` if a customer or miner bucket would go below zero."""
    if sum(e.amount for e in entries) != 0:
        raise ValueError("a ledger posting must balance to zero")
    with transaction.atomic():
        # lock the rows in one order, so two postings never wait on each other in a circle
        ids = sorted({e.account.pk for e in entries})
        locked = {a.pk: a for a in Account.objects.select_for_update().filter(pk__in=ids).order_by("pk")}
        try:
            with transaction.atomic():
                posting = LedgerTransaction.objects.create(
                    kind=kind, key=key, job=job, memo=memo[:300], created_by=created_by
                )
        except IntegrityError:
            raise AlreadyPosted(key) from None
        for entry in entries:
            account = locked[entry.account.pk]
            field = "available_wei" if entry.bucket == AVAILABLE else "reserved_wei"
            setattr(account, field, getattr(account, field) + Decimal(entry.amount))
        for account in locked.values():
            if account.kind not in MAY_GO_NEGATIVE and (account.available_wei < 0 or account.reserved_wei < 0):
                raise InsufficientFunds(
                    f"not enough available balance: {max(account.available_wei, 0)} wei available"
                )
        LedgerEntry.objects.bulk_create(
            [LedgerEntry(transaction=posting, account_id=e.account.pk, bucket=e.bucket, amount_wei=e.amount) for e in entries]
        )
        for account in locked.values():
            account.save(update_fields=["available_wei", "reserved_wei"])
    return posting


def ledger_totals() -> dict[str, int]:
    """The figures the conservation equation is made of (the treasury report reads these)."""
    accounts = Account.objects.all()

    def held(kind: str, field: str) -> int:
        return wei_total(accounts.filter(kind=kind), field)

    external = LedgerEntry.objects.filter(account__kind=Account.Kind.EXTERNAL)
    deposits = -wei_total(external.filter(transaction__kind=LedgerTransaction.Kind.DEPOSIT), "amount_wei")
    withdrawals = wei_total(external.filter(transaction__kind=LedgerTransaction.Kind.WITHDRAWAL), "amount_wei")
    return {
        "customer_balances": held(Account.Kind.CUSTOMER, "available_wei"),
        "customer_reservations": held(Account.Kind.CUSTOMER, "reserved_wei"),
        "miner_payouts": held(Account.Kind.MINER, "available_wei") + held(Account.Kind.MINER, "reserved_wei"),
        "platform_fees": held(Account.Kind.PLATFORM, "available_wei") + held(Account.Kind.PLATFORM, "reserved_wei"),
        "deposits": deposits,
        "withdrawals": withdrawals,
        "entries_sum": wei_total(LedgerEntry.objects.all(), "amount_wei"),
    }


def conservation_holds() -> bool:
    t = ledger_totals()
    held = t["customer_balances"] + t["customer_reservations"] + t["miner_payouts"] + t["platform_fees"]
    return held == t["deposits"] - t["withdrawals"] and t["entries_sum"] == 0
