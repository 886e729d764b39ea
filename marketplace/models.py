"""Accounts: customers, miners and the API keys customers authenticate with."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from marketplace.fields import WeiField
from marketplace.ids import public_id


def _customer_id() -> str:
    return public_id("cus")


def _miner_id() -> str:
    return public_id("miner")


class Customer(models.Model):
    public_id = models.CharField(max_length=40, unique=True, default=_customer_id, editable=False)
    name = models.CharField(max_length=100, unique=True)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="customer"
    )
    # None means the marketplace default (settings.RATE_LIMIT_PER_MINUTE and friends)
    rate_limit_per_minute = models.PositiveIntegerField(null=True, blank=True)
    rate_limit_per_hour = models.PositiveIntegerField(null=True, blank=True)
    max_concurrent_jobs = models.PositiveIntegerField(null=True, blank=True)
    monthly_spend_cap_wei = WeiField(
        null=True, blank=True,
        help_text="the most this customer may spend (charged + reserved) in a calendar month; empty = no cap",
    )
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"

    @property
    def minute_limit(self) -> int:
        return self.rate_limit_per_minute or settings.RATE_LIMIT_PER_MINUTE

    @property
    def hour_limit(self) -> int:
        return self.rate_limit_per_hour or settings.RATE_LIMIT_PER_HOUR

    @property
    def concurrent_job_limit(self) -> int:
        return self.max_concurrent_jobs or settings.MAX_CONCURRENT_JOBS


class Miner(models.Model):
    public_id = models.CharField(max_length=40, unique=True, default=_miner_id, editable=False)
    name = models.CharField(max_length=100, unique=True)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="miner"
    )
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"


class ApiKey(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, help_text="The first characters, to tell keys apart")
    secret_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    max_concurrent_jobs = models.PositiveIntegerField(
        null=True, blank=True, help_text="the most jobs queued or running from this key; empty = the customer's limit"
    )
    budget_wei = WeiField(
        null=True, blank=True,
        help_text="the most jobs submitted with this key may cost in all (charged + reserved); empty = no budget",
    )
    # None means the customer's limits
    rate_limit_per_minute = models.PositiveIntegerField(null=True, blank=True)
    rate_limit_per_hour = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.customer.name})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def minute_limit(self) -> int:
        return self.rate_limit_per_minute or self.customer.minute_limit

    @property
    def hour_limit(self) -> int:
        return self.rate_limit_per_hour or self.customer.hour_limit
