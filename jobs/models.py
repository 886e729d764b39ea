"""The Job and its history: events (every transition) and attempts (every node it ran on)."""
from __future__ import annotations

from django.db import models
from django.utils import timezone

from billing.fields import WeiField
from marketplace.ids import public_id
from marketplace.models import ApiKey, Customer
from nodes.models import Node


def _job_id() -> str:
    return public_id("job", 12)


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    ASSIGNED = "assigned"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED})
ACTIVE = frozenset({JobStatus.QUEUED, JobStatus.ASSIGNED, JobStatus.RUNNING})
# given to a node and not finished: each holds one of its slots
ON_NODE = frozenset({JobStatus.ASSIGNED, JobStatus.RUNNING})
# the error_code of a job the marketplace stopped at its timeout (charged for the time it ran)
TIMED_OUT = "timed_out"
# ... and of one stopped when it had run all its reservation pays for (charged exactly the reservation)
BUDGET_EXHAUSTED = "budget_exhausted"
# a job's timeout when its submit names none; its reservation covers this much running
DEFAULT_TIMEOUT_SECONDS = 3600


class BillingStatus(models.TextChoices):
    NONE = "none"
    RESERVED = "reserved"
    SETTLED = "settled"
    RELEASED = "released"


class Priority(models.TextChoices):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


# the scheduler takes queued jobs in this order (lowest first), then oldest first
PRIORITY_RANK = {Priority.URGENT: 0, Priority.HIGH: 1, Priority.NORMAL: 2, Priority.LOW: 3}


def _subscription_id() -> str:
    return public_id("sub", 12)


class DelegatedSubscription(models.Model):
    """An Infernet delegated subscription: a signed schedule of jobs, run here instead of on a chain.

    Interval ``i`` (1..frequency) falls due at ``active_at + (i - 1) * period``; each runs
    on up to ``redundancy`` distinct nodes, and each result goes to the delivery adapter.
    """

    class Status(models.TextChoices):
        ACTIVE = "active"
        COMPLETED = "completed"

    public_id = models.CharField(max_length=40, unique=True, default=_subscription_id, editable=False)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="subscriptions")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="subscriptions")
    owner = models.CharField(max_length=42, help_text="the subscription's owner address; it signed the request")
    nonce = models.PositiveBigIntegerField()
    expiry = models.PositiveBigIntegerField(help_text="the signature's expiry, Unix seconds")
    containers = models.JSONField(help_text="the container ids the signed hash stands for")
    containers_hash = models.CharField(max_length=66)
    data = models.JSONField(default=dict)
    active_at = models.PositiveBigIntegerField()
    period = models.PositiveBigIntegerField()
    frequency = models.PositiveIntegerField()
    redundancy = models.PositiveIntegerField()
    terms = models.JSONField(default=dict, help_text="lazy, verifier, payment_amount, payment_token, wallet, as signed")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE, db_index=True)
    next_interval = models.PositiveIntegerField(default=1)
    next_run_at = models.DateTimeField(db_index=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "nonce"], name="subscription_owner_nonce")]

    def __str__(self) -> str:
        return f"{self.public_id} ({self.owner}, {self.status})"


class Job(models.Model):
    public_id = models.CharField(max_length=40, unique=True, default=_job_id, editable=False)
    # indexed by (customer, -id) and (customer, created_at) below
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="jobs", db_index=False)
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")

    # what to run: a model (the marketplace picks the container) or an explicit chain
    model = models.CharField(max_length=100, blank=True)
    containers = models.JSONField(default=list, blank=True)
    input = models.JSONField(null=True)
    output_config = models.JSONField(default=dict, blank=True)
    gpu_type = models.CharField(max_length=40, blank=True)
    gpu_count = models.PositiveIntegerField(default=0)
    min_vram_gb = models.FloatField(default=0)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    # the priority's sort key, computed by the database, so one index orders the queue
    priority_rank = models.GeneratedField(
        expression=models.Case(
            *(models.When(priority=p, then=models.Value(rank)) for p, rank in PRIORITY_RANK.items()),
            default=models.Value(PRIORITY_RANK[Priority.NORMAL]),
        ),
        output_field=models.SmallIntegerField(),
        db_persist=True,
    )
    timeout_seconds = models.PositiveIntegerField(default=DEFAULT_TIMEOUT_SECONDS)

    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    status_reason = models.CharField(max_length=300, blank=True)
    progress = models.PositiveSmallIntegerField(default=0)
    node = models.ForeignKey(Node, null=True, blank=True, on_delete=models.PROTECT, related_name="jobs")
    node_job_id = models.CharField(max_length=64, blank=True)
    result = models.JSONField(null=True, blank=True)
    # a chain's outputs before the last container's, as the node reported them
    intermediate_results = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    receipt = models.JSONField(null=True, blank=True)
    receipt_verified = models.BooleanField(default=False)
    # why it failed, as a problem code a client can act on (e.g. invalid_encrypted_request)
    error_code = models.CharField(max_length=40, blank=True)

    # a private job (privacy/): sealed to one node's transport key; the marketplace
    # holds the envelopes only, and the job runs on that node or nowhere
    is_private = models.BooleanField(default=False)
    # indexed where set (job_pinned below): nearly every job has none, and an index of them all
    # tempted the scheduler's "pinned to nobody or to these nodes" into reading every job
    pinned_node = models.ForeignKey(
        Node, null=True, blank=True, on_delete=models.PROTECT, related_name="pinned_jobs", db_index=False
    )
    encrypted_request = models.JSONField(null=True, blank=True)
    encrypted_response = models.JSONField(null=True, blank=True)
    request_expires_at = models.CharField(
        max_length=20, blank=True, help_text="the sealed request's expires_at: Unix seconds, exactly as sealed"
    )

    estimated_cost_wei = WeiField(default=0)
    estimated_time_seconds = models.PositiveIntegerField(default=0)
    policy_version = models.PositiveIntegerField(default=0)
    # money, in wei: quoted, held while it runs, then charged (customer), paid (miner) and kept (fee)
    max_price_wei = WeiField(null=True, blank=True)
    quoted_price_wei = WeiField(default=0)
    reserved_price_wei = WeiField(default=0)
    # the dearest node rate (wei per GPU-second) its reservation covers: a node asking more is
    # not given the job (None: any; a job pinned to its node)
    rate_ceiling_wei = WeiField(null=True, blank=True)
    # the rate of the node it was given, at assignment: what its bill is charged at
    rate_wei_per_second = WeiField(null=True, blank=True)
    charged_price_wei = WeiField(default=0)
    payout_price_wei = WeiField(default=0)
    fee_price_wei = WeiField(default=0)
    billing_status = models.CharField(max_length=10, choices=BillingStatus.choices, default=BillingStatus.NONE)
    receipt_hash = models.CharField(max_length=64, blank=True)

    # a job run for one interval of a delegated subscription
    subscription = models.ForeignKey(
        DelegatedSubscription, null=True, blank=True, on_delete=models.PROTECT, related_name="jobs"
    )
    subscription_interval = models.PositiveIntegerField(null=True, blank=True)

    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    request_hash = models.CharField(max_length=64, blank=True)

    # dispatch bookkeeping: how often it was tried, where it failed, and the deadlines
    # the marketplace enforces itself (a node's silence never holds a job)
    attempt_count = models.PositiveSmallIntegerField(default=0)
    excluded_nodes = models.JSONField(default=list, blank=True)
    queue_deadline = models.DateTimeField(null=True, blank=True)
    # assigned_at + timeout_seconds: the job is stopped then, whatever the node says
    deadline_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    assigned_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="job_idempotency_key_per_customer",
            )
        ]
        # Every index costs each write of a job (a status change rewrites the row in every index),
        # and the job path reads only the few jobs that are not finished. So the indexes the job
        # path reads are partial: they hold the queued jobs, the jobs on nodes, the open bills,
        # and stay as small as the work in flight however long the history grows. The statements
        # name their status in the SQL text (marketplace.constant_lookups) so that PostgreSQL uses
        # them in a prepared statement's generic plan too.
        indexes = [
            models.Index(fields=["customer", "-id"]),
            models.Index(fields=["customer", "created_at"], name="job_customer_created"),
            # the scheduler's queue, in the order it is served
            models.Index(fields=["priority_rank", "id"], condition=models.Q(status=JobStatus.QUEUED), name="job_queue"),
            # a node's busy slots; run deadlines and acceptances the watchdog enforces
            models.Index(fields=["node", "deadline_at"], condition=models.Q(status__in=sorted(ON_NODE)),
                         name="job_on_node"),
            # a model's recent completions: its median run time
            models.Index(fields=["model", "-completed_at"], condition=models.Q(status=JobStatus.COMPLETED),
                         name="job_model_completed"),
            # bills not closed yet: the jobs in flight, and any a finished job left open
            models.Index(fields=["customer"], condition=models.Q(billing_status=BillingStatus.RESERVED), name="job_bill_open"),
            models.Index(fields=["receipt_hash"], name="job_receipt"),
            models.Index(fields=["pinned_node"], condition=models.Q(pinned_node__isnull=False), name="job_pinned"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} ({self.status})"

    @property
    def run_seconds(self) -> float | None:
        """From its start to its end, as the marketplace saw them; None until both happened."""
        if self.started_at is None or self.completed_at is None:
            return None
        return (self.completed_at - self.started_at).total_seconds()

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def container_data(self):
        """What the first container gets: an object input as is, anything else under "input"."""
        return self.input if isinstance(self.input, dict) else {"input": self.input}


class JobEvent(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    old_status = models.CharField(max_length=10, blank=True)
    new_status = models.CharField(max_length=10)
    reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]


class JobAttempt(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        LOST = "lost"
        CANCELLED = "cancelled"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="attempts")
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="attempts")
    number = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING, db_index=True)
    node_job_id = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    # the node's price when it was given this attempt (wei per GPU-second)
    rate_wei_per_second = WeiField(null=True, blank=True)

    class Meta:
        ordering = ["number"]
        constraints = [models.UniqueConstraint(fields=["job", "number"], name="job_attempt_number")]


class SubscriptionDelivery(models.Model):
    """One result of one interval from one node, as the delivery adapter received it."""

    subscription = models.ForeignKey(DelegatedSubscription, on_delete=models.CASCADE, related_name="deliveries")
    interval = models.PositiveIntegerField()
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="deliveries")
    job = models.OneToOneField(Job, on_delete=models.PROTECT, related_name="delivery")
    output_sha256 = models.CharField(max_length=64)
    delivered_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["interval", "id"]
        constraints = [
            models.UniqueConstraint(fields=["subscription", "interval", "node"], name="delivery_once_per_node")
        ]
