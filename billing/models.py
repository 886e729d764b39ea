"""Pricing policy: versioned, published by staff; every quote names the version it used."""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from marketplace.fields import WeiField

DEFAULT_GPU_RATES_WEI = {
    # wei per GPU-second; "cpu" prices a job that asks for no GPU
    "cpu": "1000000000",
    "t4": "20000000000",
    "a10": "40000000000",
    "v100": "50000000000",
    "a100": "120000000000",
    "h100": "250000000000",
    "h200": "300000000000",
}
DEFAULT_PRIORITY_MULTIPLIERS_BPS = {"low": 8000, "normal": 10000, "high": 15000, "urgent": 25000}


class PricingPolicy(models.Model):
    """One version of the price list. Versions are never edited: a change is a new version."""

    version = models.PositiveIntegerField(unique=True, editable=False)
    gpu_rates_wei = models.JSONField(
        default=dict, help_text='wei per GPU-second by GPU type, e.g. {"h100": "250000000000", "cpu": "1000000000"}'
    )
    default_rate_wei = WeiField(
        default=100_000_000_000, help_text="wei per GPU-second for a GPU type not listed"
    )
    priority_multipliers_bps = models.JSONField(
        default=dict, help_text='basis points per priority, 10000 = ×1: {"low": 8000, "normal": 10000, ...}'
    )
    default_expected_seconds = models.PositiveIntegerField(
        default=10, help_text="run time assumed for a model with no recent history"
    )
    node_price_bounds_wei = models.JSONField(
        default=dict, blank=True,
        help_text='the lowest and highest price per GPU-second a node may ask, by GPU type ("cpu" for nodes '
                  'without one): {"h100": ["200000000000", "400000000000"]}; a type not listed has no bounds',
    )
    model_base_prices_wei = models.JSONField(
        default=dict, blank=True, help_text='a fixed price per job by model, added to the time price: {"llama-3-8b": "1000"}'
    )
    platform_fee_bps = models.PositiveIntegerField(default=1000, help_text="the platform's share of each charge, 10000 = 100%")
    minimum_charge_wei = WeiField(default=0, help_text="no job costs less than this")
    minimum_withdrawal_wei = WeiField(default=0, help_text="the least a miner may ask to withdraw at a time")
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, editable=False
    )

    class Meta:
        ordering = ["-version"]
        verbose_name_plural = "pricing policies"

    def clean(self) -> None:
        bounds = self.node_price_bounds_wei or {}
        if not isinstance(bounds, dict):
            raise ValidationError({"node_price_bounds_wei": 'a JSON object: {"h100": ["floor", "ceiling"]}'})
        for gpu_class, pair in bounds.items():
            if (not isinstance(pair, list) or len(pair) != 2 or not all(str(b).isdigit() for b in pair)
                    or int(pair[0]) > int(pair[1])):
                raise ValidationError({"node_price_bounds_wei": f'{gpu_class}: two whole numbers of wei, the floor '
                                                                 f'first: ["200000000000", "400000000000"]'})

    def __str__(self) -> str:
        return f"pricing v{self.version}"


class Account(models.Model):
    """Money somebody holds on the marketplace, in two buckets: available and reserved.

    Every change is a balanced LedgerTransaction; these two figures are the sums
    of its entries, kept on the row so that a balance check is one read.
    The external account stands for the world outside: deposits come from it.

    A customer's row also carries the counters its limits are checked against, so
    that a reservation tests them in the same conditional statement that moves the
    money (``billing.ledger``), with no lock held across statements:
    ``active_jobs`` is the number of the customer's jobs whose bill is open (reserved,
    not yet settled or released), and ``month_spent_wei`` what the jobs created in
    ``spend_month`` cost or may still cost (charged once settled, held while reserved).
    """

    class Kind(models.TextChoices):
        CUSTOMER = "customer"
        MINER = "miner"
        PLATFORM = "platform"
        EXTERNAL = "external"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    customer = models.OneToOneField(
        "marketplace.Customer", null=True, blank=True, on_delete=models.PROTECT, related_name="account"
    )
    miner = models.OneToOneField("marketplace.Miner", null=True, blank=True, on_delete=models.PROTECT, related_name="account")
    available_wei = WeiField(default=0)
    reserved_wei = WeiField(default=0)
    active_jobs = models.IntegerField(default=0, help_text="jobs whose bill is open: reserved, not yet closed")
    spend_month = models.DateField(null=True, blank=True, help_text="the month month_spent_wei counts")
    month_spent_wei = WeiField(default=0, help_text="charged + still reserved for the jobs created in spend_month")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind"], condition=models.Q(kind__in=["platform", "external"]),
                                    name="one_platform_and_one_external_account"),
        ]

    def __str__(self) -> str:
        owner = self.customer or self.miner or self.kind
        return f"account of {owner}"

    @property
    def balance_wei(self):
        return self.available_wei + self.reserved_wei


class KeySpend(models.Model):
    """An API key's counters, checked and moved in one conditional statement per reservation:
    its jobs with an open bill, and what all its jobs cost or may still cost (its budget's measure)."""

    api_key = models.OneToOneField("marketplace.ApiKey", primary_key=True, on_delete=models.CASCADE,
                                   related_name="spend")
    active_jobs = models.IntegerField(default=0)
    spent_wei = WeiField(default=0, help_text="charged + still reserved, over every job of the key")

    def __str__(self) -> str:
        return f"spend of {self.api_key_id}"


class LedgerTransaction(models.Model):
    class Kind(models.TextChoices):
        DEPOSIT = "deposit"
        WITHDRAWAL = "withdrawal"
        HOLD = "hold"  # a miner's withdrawal, held until staff pay or reject it
        RESERVE = "reserve"
        RELEASE = "release"
        SETTLE = "settle"
        REFUND = "refund"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    # one posting per key: a settlement delivered twice, or a retried deposit, posts once
    key = models.CharField(max_length=120, unique=True)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.PROTECT, related_name="ledger")
    memo = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"{self.kind} {self.key}"


class LedgerEntry(models.Model):
    class Bucket(models.TextChoices):
        AVAILABLE = "available"
        RESERVED = "reserved"

    transaction = models.ForeignKey(LedgerTransaction, on_delete=models.PROTECT, related_name="entries")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="entries")
    bucket = models.CharField(max_length=10, choices=Bucket.choices)
    amount_wei = WeiField()  # signed: what this entry adds to the bucket

    class Meta:
        verbose_name_plural = "ledger entries"


class LedgerAdjustment(models.Model):
    """A deposit or refund made by staff: who, how much, why (the audit trail)."""

    class Kind(models.TextChoices):
        DEPOSIT = "deposit"
        REFUND = "refund"

    customer = models.ForeignKey("marketplace.Customer", on_delete=models.PROTECT, related_name="adjustments")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    amount_wei = WeiField()
    reason = models.CharField(max_length=300)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.PROTECT)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    transaction = models.OneToOneField(LedgerTransaction, null=True, on_delete=models.PROTECT)

    def __str__(self) -> str:
        return f"{self.kind} of {self.amount_wei} wei to {self.customer}"


class Withdrawal(models.Model):
    """A miner's request to be paid out: held on its account at once, then paid or rejected by staff."""

    class Status(models.TextChoices):
        REQUESTED = "requested"
        PAID = "paid"
        REJECTED = "rejected"

    miner = models.ForeignKey("marketplace.Miner", on_delete=models.PROTECT, related_name="withdrawals")
    amount_wei = WeiField()
    address = models.CharField(max_length=42, help_text="where to send it: an Ethereum address")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.REQUESTED, db_index=True)
    payout_reference = models.CharField(max_length=200, blank=True, help_text="the transfer staff made (a tx hash)")
    reason = models.CharField(max_length=300, blank=True, help_text="why it was rejected")
    created_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"withdrawal of {self.amount_wei} wei by {self.miner}"
