"""The sweep that enforces what a silent node would not, run every couple of seconds by each
worker process (``jobs.sweeper``). One query per rule over all jobs, never a timer per job;
every action is a guarded transition, so two workers sweeping at once is harmless.
"""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from jobs.dispatch.attempts import attempt_abandoned, attempt_timed_out, job_expire, job_fail_pinned_node_gone
from jobs.dispatch.scheduler import attempt_ref, jobs_waiting, schedule
from jobs.models import ON_NODE, TERMINAL, BillingStatus, Job, JobStatus
from jobs.services.lifecycle import job_start
from jobs.services.money import job_billing_close
from nodes.models import Node

BATCH = 200
# a node has this long to say it started a job it was given before the job is taken back
ACCEPT_SECONDS = 15


def jobs_watch(*, now=None) -> int:
    """One sweep; the number of things it did (jobs assigned included)."""
    now = now or timezone.now()
    actions = 0
    for job in Job.objects.filter(status__is=JobStatus.QUEUED, queue_deadline__lt=now).select_related("pinned_node")[:BATCH]:
        job_expire(job=job)
        actions += 1
    active = Job.objects.filter(status__is_in=ON_NODE).select_related("node")
    for job in active.filter(deadline_at__lt=now)[:BATCH]:
        attempt_timed_out(job=job)
        actions += 1
    unaccepted = active.filter(status__is=JobStatus.ASSIGNED, assigned_at__lt=now - timedelta(seconds=ACCEPT_SECONDS))
    for job in unaccepted[:BATCH]:
        alive = job.node.last_heartbeat_at is not None and job.node.last_heartbeat_at > job.assigned_at
        if alive and [job.public_id, job.attempt_count] in job.node.running_attempts:
            # it runs the job, and said so since: its "accepted" waits among frames the marketplace
            # has yet to read, or was lost on the way. Taking the job back would run it twice: the
            # heartbeat is taken for the acceptance, and the run deadline holds as ever.
            job_start(job_pk=job.pk, job_id=job.public_id, node_pk=job.node_id, number=job.attempt_count,
                      node_job_id="", reason=f"running on node {job.node.public_id} (its heartbeat says so)",
                      row=attempt_ref(job))
            actions += 1
            continue
        # a node that kept beating may never have had the frame (the marketplace lost or delayed
        # it): it is not blamed and may get the job again. A node silent since is struck and passed over.
        attempt_abandoned(job=job, error=f"node {job.node.public_id} did not start the job in {ACCEPT_SECONDS} s",
                          strike=not alive, exclude=not alive)
        actions += 1
    # a node silent past the grace is gone: its socket is forgotten and its jobs go elsewhere
    horizon = now - timedelta(seconds=settings.NODE_OFFLINE_AFTER_SECONDS)
    Node.objects.filter(last_heartbeat_at__lt=horizon).exclude(channel_name="").update(channel_name="")
    for job in active.filter(node__last_heartbeat_at__lt=horizon)[:BATCH]:
        attempt_abandoned(job=job, error=f"lost node {job.node.public_id}: no heartbeat for "
                                         f"{settings.NODE_OFFLINE_AFTER_SECONDS} s")
        actions += 1
    # a job that may run on one node only (private, a subscription's interval) fails once that
    # node is gone for good, instead of waiting out its queue deadline
    pinned_away = Job.objects.filter(status__is=JobStatus.QUEUED, pinned_node__isnull=False).filter(
        Q(pinned_node__last_heartbeat_at__lt=horizon) | Q(pinned_node__last_heartbeat_at__isnull=True)
    ).select_related("pinned_node")
    for job in pinned_away[:BATCH]:
        job_fail_pinned_node_gone(job=job)
        actions += 1
    # a finished job whose bill is still open (none should be: ending closes it in the
    # same transaction) has its reservation released, so no funds stay held forever
    for job in Job.objects.filter(status__is_in=TERMINAL, billing_status__is=BillingStatus.RESERVED)[:BATCH]:
        with transaction.atomic():
            job_billing_close(job=job)
        actions += 1
    # jobs whose scheduling message was lost still find their slot
    if jobs_waiting():
        actions += schedule().assigned
    return actions
