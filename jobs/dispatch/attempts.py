"""What happens to a job when its node answers, or does not: one function per outcome.

Every function here is a short transaction of guarded updates, called from the
node socket's consumer (a frame arrived) or the watchdog (a deadline passed). An
attempt is named by ``(job public id, attempt number)`` and belongs to one node: a
frame about an attempt that is not, or no longer, that node's changes nothing.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from jobs.dispatch.node_channel import cancel_on_node
from jobs.models import BUDGET_EXHAUSTED, ON_NODE, TIMED_OUT, Job, JobAttempt, JobStatus
from jobs.live import job_row_event
from jobs.services.lifecycle import job_start, job_transition
from jobs.services.money import job_run_seconds
from marketplace.rows import RowLoader, quoted, update_where
from nodes.models import Node
from nodes.selectors import no_candidate_reason
from privacy.relay import private_result_check
from wire.encoding import json_bytes
from wire.envelope import TransportError
from wire.signing import verify_receipt

log = logging.getLogger(__name__)

# what a node answers when it had no free slot after all
AT_CAPACITY = "at_capacity"


class ForeignAttempt(Exception):
    """The frame names an attempt that is not this node's current one."""


@dataclass(frozen=True)
class Outcome:
    """What the caller does next: tell the node to cancel; schedule, since a slot freed."""

    cancel: bool = False
    freed: bool = False


# what settling never reads of the node: its JSON columns cost more to decode than the rest of
# the row (a busy node's running list is a hundred attempts long)
_NODE_UNREAD = ("containers", "model_map", "gpus", "hardware", "transport_keys", "last_heartbeat", "running_attempts",
                "unavailable_models", "gpu_stats")
_JOB_ROW = RowLoader(Job, "j")
_NODE_ROW = RowLoader(Node, "n", leave_out=_NODE_UNREAD)


def _attempt_job(*, node_pk: int, job_id: str, number: int) -> Job:
    """The job whose current attempt ``number`` is on this node, with its node, in one read
    (written out: the ORM's compiling of this join cost ten times the read)."""
    sql = (f"SELECT {_JOB_ROW.columns}, {_NODE_ROW.columns} FROM {quoted(Job._meta.db_table)} j "
           f"JOIN {quoted(Node._meta.db_table)} n ON n.id = j.node_id "
           "WHERE j.public_id = %s AND j.node_id = %s AND j.attempt_count = %s")
    with connection.cursor() as cursor:
        cursor.execute(sql, [job_id, node_pk, number])
        row = cursor.fetchone()
    if row is None:
        raise ForeignAttempt(f"job {job_id} attempt {number} is not assigned to this node")
    job = _JOB_ROW.build(row)
    job.node = _NODE_ROW.build(row, _JOB_ROW.width)
    return job


def _end_attempt(job: Job, status: str, error: str = "", node_job_id: str | None = None) -> bool:
    """End the job's current attempt; False if it had ended already (of two endings, one wins)."""
    fields = {"status": status, "error": error[:2000], "ended_at": timezone.now()}
    if node_job_id:
        fields["node_job_id"] = node_job_id[:64]
    return update_where(JobAttempt, fields, "job_id = %s AND number = %s AND status = %s",
                        [job.pk, job.attempt_count, JobAttempt.Status.RUNNING]) == 1


def _strike(node_pk: int) -> None:
    """The node failed work it took on: it gets fewer slots until it succeeds again."""
    Node.objects.filter(pk=node_pk).update(strikes=F("strikes") + 1)


def _forgive(node: Node) -> None:
    if node.strikes:
        Node.objects.filter(pk=node.pk, strikes__gt=0).update(strikes=Greatest(F("strikes") - 1, 0))


# --- the node's answers ----------------------------------------------------------------


def attempt_accepted(*, node_pk: int, node_id: str, job_id: str, number: int, node_job_id: str,
                     ref: dict | None = None) -> Outcome:
    """The node started the attempt: the job runs. One update and its event, nothing read first."""
    if ref is None:  # an attempt this socket learned of from the node's hello, not from the scheduler
        job = Job.objects.filter(public_id=job_id, node_id=node_pk, attempt_count=number).first()
        if job is None:
            return Outcome(cancel=True)
        ref = {"pk": job.pk, "customer": job.customer_id, "event": job_row_event(job)}
    if job_start(job_pk=ref["pk"], job_id=job_id, node_pk=node_pk, number=number, node_job_id=node_job_id,
                 reason=f"running on node {node_id}", row=ref):
        return Outcome()
    status = Job.objects.filter(pk=ref["pk"], node_id=node_pk, attempt_count=number).values_list("status", flat=True).first()
    return Outcome(cancel=status != JobStatus.RUNNING)  # a repeated frame changes nothing


@transaction.atomic
def attempt_refused(*, node_pk: int, job_id: str, number: int, code: str, error: str) -> Outcome:
    try:
        job = _attempt_job(node_pk=node_pk, job_id=job_id, number=number)
    except ForeignAttempt:
        return Outcome()
    if job.status not in ON_NODE:
        return Outcome()
    message = f"node {job.node.public_id} refused the job: {error}"[:300]
    if code == AT_CAPACITY:
        # it claimed a slot it did not have: fewer slots for it, and the job goes back as it was
        _strike(node_pk)
        _end_attempt(job, JobAttempt.Status.LOST, message)
        _requeue(job, message, exclude=False)
        return Outcome(freed=True)
    if job.is_private and code:
        # the node would not open it (bad envelope, unknown key, expired, replayed): final
        _end_attempt(job, JobAttempt.Status.FAILED, message)
        _fail(job, message, code=code)
        return Outcome(freed=True)
    _strike(node_pk)
    attempt_lost(job=job, error=message)
    return Outcome(freed=True)


@transaction.atomic
def attempt_result(*, node_pk: int, job_id: str, number: int, result: dict) -> Outcome:
    """Settle on the node's final result; raises ``ForeignAttempt`` for another node's attempt."""
    job = _attempt_job(node_pk=node_pk, job_id=job_id, number=number)
    if job.status not in ON_NODE:
        return Outcome()  # cancelled or timed out meanwhile, or a result delivered twice
    if not isinstance(result, dict):
        result = {}
    ended = _settle_private(job, result) if job.is_private else _settle(job, result)
    return Outcome(freed=ended)


def receipt_matches(*, receipt, node: Node, node_job_id: str, data, container_result) -> bool:
    """The node signed this result, for this job, over these very bytes, with a duration in ms."""
    if not isinstance(receipt, dict) or not verify_receipt(receipt, node.identity_public_key):
        return False
    body = receipt["body"]
    sha = lambda value: hashlib.sha256(json_bytes(value)).hexdigest()  # noqa: E731
    return (
        body.get("job_id") == node_job_id
        and str(body.get("duration_ms", "")).isdigit()
        and body.get("request_ciphertext_sha256") == sha(data)
        and body.get("response_ciphertext_sha256") == sha(container_result)
    )


def _settle(job: Job, result: dict) -> bool:
    node = job.node
    container_result = result.get("result") if isinstance(result.get("result"), dict) else {}
    receipt = result.get("receipt")
    node_job_id = job.node_job_id or str(result.get("id", ""))[:64]
    verified = receipt_matches(
        receipt=receipt, node=node, node_job_id=node_job_id, data=job.container_data,
        container_result=container_result,
    )
    if not verified:
        # a receipt that does not check fails this attempt once, and counts against the node
        _strike(node.pk)
        return attempt_lost(job=job, error=f"node {node.public_id} sent a receipt that does not verify")
    if result.get("reason") == "cancelled":
        # the node stopped it on its own (the marketplace's own cancels end the job first)
        _strike(node.pk)
        return attempt_lost(job=job, error=f"node {node.public_id} cancelled the job")
    fields = dict(receipt=receipt, receipt_verified=True, receipt_hash=receipt["hash"], node_job_id=node_job_id)
    if result.get("status") == "success":
        if not _end_attempt(job, JobAttempt.Status.SUCCEEDED, node_job_id=node_job_id):
            return False  # a result delivered twice at once: the first one settles
        _forgive(node)
        job_transition(
            job=job, expected=ON_NODE, new_status=JobStatus.COMPLETED,
            reason=f"completed on node {node.public_id}", result=container_result.get("output"),
            intermediate_results=result.get("intermediate_results") or [], progress=100, **fields,
        )
        return True
    error = str(container_result.get("error", "the container failed"))
    if not _end_attempt(job, JobAttempt.Status.FAILED, error, node_job_id=node_job_id):
        return False
    job_transition(
        job=job, expected=ON_NODE, new_status=JobStatus.FAILED,
        reason=f"container {container_result.get('container', '?')} failed: {error}"[:300], error=error, **fields,
    )
    return True


def _settle_private(job: Job, result: dict) -> bool:
    """Keep the sealed response only with a receipt that verifies; settle on success."""
    node = job.node
    if result.get("reason") == "cancelled":
        _end_attempt(job, JobAttempt.Status.FAILED, "cancelled on the node")
        return _fail(job, f"node {node.public_id} cancelled the job", code="cancelled_on_node")
    try:
        checked = private_result_check(job=job, node=node, result=result)
    except TransportError as exc:
        _strike(node.pk)
        _end_attempt(job, JobAttempt.Status.FAILED, str(exc))
        return _fail(job, f"node {node.public_id}: {exc}", code=exc.code)
    succeeded = checked.status == "success"
    if not _end_attempt(job, JobAttempt.Status.SUCCEEDED if succeeded else JobAttempt.Status.FAILED,
                        node_job_id=job.node_job_id or str(result.get("id", ""))):
        return False
    outcome = dict(
        encrypted_response=checked.encrypted_response, receipt=checked.receipt, receipt_verified=True,
        receipt_hash=checked.receipt_hash,
    )
    if succeeded:
        _forgive(node)
        return job_transition(job=job, expected=ON_NODE, new_status=JobStatus.COMPLETED,
                              reason=f"completed on node {node.public_id}", progress=100, **outcome)
    return job_transition(job=job, expected=ON_NODE, new_status=JobStatus.FAILED,
                          reason=f"failed on node {node.public_id}; its error is sealed in encrypted_response",
                          error="the job failed on the node; the error is sealed to you in encrypted_response",
                          error_code="private_job_failed", **outcome)


# --- endings the marketplace decides ---------------------------------------------------------


def _fail(job: Job, message: str, *, code: str = "") -> bool:
    return job_transition(job=job, expected=(JobStatus.QUEUED, *ON_NODE), new_status=JobStatus.FAILED,
                          reason=f"{code}: {message}" if code else message, error=message, error_code=code)


def _requeue(job: Job, reason: str, *, exclude: bool) -> bool:
    excluded = [*job.excluded_nodes, job.node.public_id] if exclude else job.excluded_nodes
    # the wait for a node starts again: the queue deadline counts from entering the queue
    queue_deadline = timezone.now() + timedelta(seconds=settings.JOB_QUEUE_TIMEOUT_SECONDS)
    requeued = job_transition(
        job=job, expected=ON_NODE, new_status=JobStatus.QUEUED, reason=reason,
        node=None, node_job_id="", started_at=None, progress=0, deadline_at=None, excluded_nodes=excluded,
        queue_deadline=queue_deadline,
    )
    return requeued


def attempt_lost(*, job: Job, error: str, exclude: bool = True) -> bool:
    """The attempt failed for the node's reasons: another node tries, or the job fails after the last.

    ``exclude=False`` lets the same node run it again (a node that restarted lost its
    jobs, not its ability to run them). False if the attempt had ended already.
    """
    if not _end_attempt(job, JobAttempt.Status.LOST, error):
        return False
    log.info("job %s: %s", job.public_id, error)
    cancel_on_node(job)
    if job.pinned_node_id:
        # no failover: no other node holds the key a private request was sealed to, and a
        # subscription's interval runs on distinct nodes
        return _fail(job, error, code="no_healthy_candidates")
    if job.attempt_count >= settings.JOB_MAX_ATTEMPTS:
        return _fail(job, f"gave up after {job.attempt_count} attempts; last: {error}")
    return _requeue(job, f"{error}; trying {'another' if exclude else 'a'} node", exclude=exclude)


@transaction.atomic
def attempt_timed_out(*, job: Job) -> None:
    """Stop a job at its deadline: its timeout, or what its reservation pays for if that is less."""
    run_seconds = job_run_seconds(job)
    if run_seconds < job.timeout_seconds:
        code, message = BUDGET_EXHAUSTED, f"stopped after {run_seconds} s: its max_price_wei pays for no more"
    else:
        code, message = TIMED_OUT, f"timed out after {job.timeout_seconds} s"
    _end_attempt(job, JobAttempt.Status.FAILED, message)
    cancel_on_node(job)
    job_transition(job=job, expected=ON_NODE, new_status=JobStatus.FAILED, reason=message, error=message,
                   error_code=code)


@transaction.atomic
def attempt_abandoned(*, job: Job, error: str, strike: bool = True, exclude: bool = True) -> None:
    """The node went silent on this attempt (never accepted it, or vanished): take it back."""
    if job.status not in ON_NODE:
        return
    node_pk = job.node_id  # the job is off the node once the attempt is lost
    if attempt_lost(job=job, error=error, exclude=exclude) and strike:
        _strike(node_pk)


@transaction.atomic
def job_fail_pinned_node_gone(*, job: Job) -> None:
    """A queued job that only its node may run, and that node went away: no other can take it."""
    _fail(job, f"node {job.pinned_node.public_id} is not online", code="no_healthy_candidates")


@transaction.atomic
def job_expire(*, job: Job) -> None:
    """No node took it in time (or its sealed request expired first)."""
    if job.pinned_node_id:
        node = job.pinned_node.public_id
        if job.is_private and int(job.request_expires_at or 0) <= time.time():
            code, reason = "expired_request", f"the request expired before node {node} had a free slot"
        else:
            code = "no_healthy_candidates"
            reason = f"node {node} had no free slot for {settings.JOB_QUEUE_TIMEOUT_SECONDS} s"
        job_transition(job=job, expected=JobStatus.QUEUED, new_status=JobStatus.EXPIRED, error_code=code,
                       reason=reason)
        return
    reason = no_candidate_reason(model=job.model, containers=job.containers, gpu_type=job.gpu_type,
                                 gpu_count=job.gpu_count, min_vram_gb=job.min_vram_gb, exclude=job.excluded_nodes)
    job_transition(job=job, expected=JobStatus.QUEUED, new_status=JobStatus.EXPIRED,
                   reason=f"{reason} (waited {settings.JOB_QUEUE_TIMEOUT_SECONDS} s)")
