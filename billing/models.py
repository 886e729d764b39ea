"""Pricing policy: versioned, published by staff; every quote names the version it used."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

WEI = dict(max_digits=78, decimal_places=0)  # uint256 range, integers only

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
    default_rate_wei = models.DecimalField(
        **WEI, default=100_000_000_000, help_text="wei per GPU-second for a GPU type not listed"
    )
    priority_multipliers_bps = models.JSONField(
        default=dict, help_text='basis points per priority, 10000 = ×1: {"low": 8000, "normal": 10000, ...}'
    )
    default_expected_seconds = models.PositiveIntegerField(
        default=10, help_text="run time assumed for a model with no recent history"
    )
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, editable=False
    )

    class Meta:
        ordering = ["-version"]
        verbose_name_plural = "pricing policies"

    def __str__(self) -> str:
        return f"pricing v{self.version}"
