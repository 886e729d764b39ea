"""Nodes that miners enrol, and the one-time tokens they enrol with."""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from marketplace.fields import WeiField
from marketplace.ids import public_id
from marketplace.models import Miner


def _node_id() -> str:
    return public_id("node", 8)


def _token_expiry():
    return timezone.now() + timedelta(days=7)


class EnrollmentToken(models.Model):
    miner = models.ForeignKey(Miner, on_delete=models.CASCADE, related_name="enrollment_tokens")
    prefix = models.CharField(max_length=16)
    secret_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(default=_token_expiry)
    used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.miner.name})"


class Node(models.Model):
    class Approval(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        SUSPENDED = "suspended"

    public_id = models.CharField(max_length=40, unique=True, default=_node_id, editable=False)
    miner = models.ForeignKey(Miner, on_delete=models.PROTECT, related_name="nodes")
    name = models.CharField(max_length=100, blank=True)
    # what the node says of itself; shown to staff, never fetched: nodes dial in (jobs.dispatch)
    url = models.CharField(max_length=300, blank=True, default="")
    identity_public_key = models.CharField(max_length=64, unique=True, help_text="Ed25519, base64url")
    # agent → marketplace: bearer token (hashed) plus a signature with the identity key
    token_hash = models.CharField(max_length=64, unique=True)
    approval = models.CharField(max_length=10, choices=Approval.choices, default=Approval.PENDING)

    containers = models.JSONField(default=list, help_text="container ids the agent serves")
    model_map = models.JSONField(default=dict, help_text="model id → the container that serves it")
    gpus = models.JSONField(default=list)
    gpu_type = models.CharField(max_length=40, blank=True, db_index=True)
    gpu_count = models.PositiveIntegerField(default=0)
    vram_gb = models.FloatField(default=0, help_text="per GPU, the smallest of the node's GPUs")
    hardware = models.JSONField(default=dict)
    capacity = models.PositiveIntegerField(default=4, help_text="jobs it runs at once")
    price_per_second_wei = WeiField(default=0)
    # signed X25519 keys customers seal private jobs to (wire.keys); replaced on every heartbeat
    transport_keys = models.JSONField(default=list, blank=True)

    enrolled_at = models.DateTimeField(default=timezone.now)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_heartbeat = models.JSONField(default=dict, blank=True)
    # the channel of the node socket's consumer while the node is connected; jobs go down it
    channel_name = models.CharField(max_length=200, blank=True, default="")
    connected_at = models.DateTimeField(null=True, blank=True)
    # the attempts ([job id, attempt]) its last heartbeat said it runs: a job it holds is not taken
    # back for a late "accepted" (the marketplace may be the one behind, reading its frames)
    running_attempts = models.JSONField(default=list, blank=True)
    # models it advertises and said (in its hello) it cannot run now, each with why: not offered
    unavailable_models = models.JSONField(default=dict, blank=True)
    # each GPU's figures in its last heartbeat (busy percent, memory, temperature), where it reports them
    gpu_stats = models.JSONField(default=list, blank=True)
    # failures it caused since its last success: each halves the slots it is given (at least one)
    strikes = models.PositiveSmallIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name or self.public_id} ({self.miner.name})"

    @property
    def slots(self) -> int:
        """How many jobs the scheduler gives it at once: its word, less for every recent failure."""
        return max(1, self.capacity >> min(self.strikes, 16))

    @property
    def is_online(self) -> bool:
        if self.last_heartbeat_at is None or not self.channel_name:
            return False
        return timezone.now() - self.last_heartbeat_at < timedelta(seconds=settings.NODE_OFFLINE_AFTER_SECONDS)
