"""Dispatch: give a queued job to a node, relay it live, settle it, fail over when a node dies.

Runs inside the ``dispatch_job`` actor, which Dramatiq may deliver more than once:
every step checks what is already done. A worker holds a job through a lease it
renews while it relays; a job whose lease lapses (its worker died) is taken over.
"""
from __future__ import annotations

import hashlib
import logging
import queue
import secrets
import time
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from jobs.live import publish_now
from jobs.models import Job, JobAttempt, JobStatus
from jobs.node_client import JobStream, NodeRefused, NodeUnreachable, node_job_cancel, node_job_result
from jobs.services.lifecycle import job_transition
from nodes.agent.identity import verify_receipt
from nodes.agent.jobs import json_bytes
from nodes.models import Node
from nodes.selectors import no_candidate_reason, node_candidates, nodes_online
from privacy.relay import PRIVATE_PUSH_PATH, private_push, private_result_check
from privacy.transport import TransportError

log = logging.getLogger(__name__)

LEASE_SECONDS = 15
TICK_SECONDS = 0.5
RETRY_DELAY_MS = 1000
MAX_RETRY_DELAY_MS = 15000
REDISPATCH_GRACE = timedelta(seconds=30)
RUNNING_STATES = (JobStatus.ASSIGNED, JobStatus.RUNNING)


def new_holder() -> str:
    return secrets.token_hex(8)


def dispatch(job_pk: int) -> None:
    job = Job.objects.select_related("node").filter(pk=job_pk).first()
    if job is None or job.is_terminal:
        return
    now = timezone.now()
    holder = new_holder()
    if job.status in RUNNING_STATES:
        if job.lease_expires_at and job.lease_expires_at > now:
            return  # another worker is on it
        taken = Job.objects.filter(pk=job.pk, status=job.status, lease_owner=job.lease_owner).update(
            lease_owner=holder, lease_expires_at=now + timedelta(seconds=LEASE_SECONDS)
        )
        if taken == 1:
            job.refresh_from_db()
            _recover(job, holder)
        return
    if job.queue_deadline and now >= job.queue_deadline:
        job_expire(job)
        return
    if job.pinned_node_id and not nodes_online().filter(pk=job.pinned_node_id).exists():
        # a pinned job (private: only that node can open it; a subscription's: one of its
        # distinct nodes) may not be tried anywhere else
        _fail_pinned(job, "no_healthy_candidates", f"node {job.pinned_node.public_id} is not online")
        return
    attempt = _claim(job, holder)
    if attempt is None:
        _wait_for_a_node(job)
        return
    _run_attempt(job, attempt, holder)


def _spec(job: Job) -> dict:
    return dict(
        model=job.model,
        containers=job.containers,
        gpu_type=job.gpu_type,
        gpu_count=job.gpu_count,
        min_vram_gb=job.min_vram_gb,
        exclude=job.excluded_nodes,
    )


def job_expire(job: Job) -> None:
    if job.pinned_node_id:
        node = job.pinned_node.public_id
        if job.is_private and int(job.request_expires_at) <= time.time():
            code, reason = "expired_request", f"the request expired before node {node} had a free slot"
        else:
            code = "no_healthy_candidates"
            reason = f"node {node} had no free slot for {settings.JOB_QUEUE_TIMEOUT_SECONDS} s"
        job_transition(job=job, expected=JobStatus.QUEUED, new_status=JobStatus.EXPIRED, error_code=code,
                       reason=reason)
        return
    reason = no_candidate_reason(**_spec(job))
    waited = settings.JOB_QUEUE_TIMEOUT_SECONDS
    job_transition(job=job, expected=JobStatus.QUEUED, new_status=JobStatus.EXPIRED, reason=f"{reason} (waited {waited} s)")


def _fail_pinned(job: Job, code: str, message: str, holder: str | None = None,
                 expected=(JobStatus.QUEUED, *RUNNING_STATES)) -> None:
    """End a pinned job: it has no other node to go to. The reservation is released."""
    job_transition(job=job, expected=expected, new_status=JobStatus.FAILED, holder=holder,
                   reason=f"{code}: {message}", error=message, error_code=code)


def _wait_for_a_node(job: Job) -> None:
    from jobs.tasks import dispatch_job

    if job.pinned_node_id:
        reason = f"node {job.pinned_node.public_id} is busy; the job waits for a free slot on it"
    else:
        reason = no_candidate_reason(**_spec(job))
    now = timezone.now()
    changed = Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
        status_reason=reason[:300], next_dispatch_at=now + REDISPATCH_GRACE
    )
    if not changed:
        return
    if reason != job.status_reason:
        job.status_reason = reason
        publish_now(job.public_id, {"type": "status", "job_id": job.public_id, "status": job.status,
                                    "progress": job.progress, "reason": reason})
    # back off as the wait grows: a freed slot or a node coming online wakes the job at
    # once anyway, and a thousand waiting jobs must not each retry every second
    age_ms = (now - job.created_at).total_seconds() * 1000
    delay = int(min(MAX_RETRY_DELAY_MS, max(RETRY_DELAY_MS, age_ms / 2)))
    dispatch_job.send_with_options(args=(job.pk,), delay=delay)


class _Locked(Exception):
    """Another worker is claiming a slot on this node right now."""


class _NodeFull(Exception):
    """Every slot of this node is taken."""


def _claim(job: Job, holder: str) -> JobAttempt | None:
    """Take one slot on the least loaded fitting node; two workers never both win the job.

    Nodes another worker is claiming on are skipped first (``SKIP LOCKED``), so
    workers spread over free nodes; only if every fitting node was locked does it
    wait its turn on them, rather than send the job to sleep while slots are free.
    """
    if job.pinned_node_id:
        candidates = list(nodes_online().filter(pk=job.pinned_node_id))
    else:
        candidates = node_candidates(**_spec(job))
    locked = []
    for candidate in candidates:
        try:
            return _claim_on(job, holder, candidate, wait=False)
        except _Locked:
            locked.append(candidate)
        except _NodeFull:
            continue
    for candidate in locked:
        try:
            return _claim_on(job, holder, candidate, wait=True)
        except _NodeFull:
            continue
    return None


def _claim_on(job: Job, holder: str, candidate: Node, wait: bool) -> JobAttempt | None:
    with transaction.atomic():
        nodes = Node.objects.filter(pk=candidate.pk)
        if connection.features.has_select_for_update_skip_locked:
            nodes = nodes.select_for_update(skip_locked=not wait)
        node = nodes.first()
        if node is None:
            raise _Locked()
        if JobAttempt.objects.filter(node=node, status=JobAttempt.Status.RUNNING).count() >= node.capacity:
            raise _NodeFull()
        now = timezone.now()
        number = job.attempt_count + 1
        claimed = job_transition(
            job=job,
            expected=JobStatus.QUEUED,
            new_status=JobStatus.ASSIGNED,
            reason=f"assigned to node {node.public_id}",
            node=node,
            node_job_id="",
            assigned_at=now,
            attempt_count=number,
            lease_owner=holder,
            lease_expires_at=now + timedelta(seconds=LEASE_SECONDS),
            next_dispatch_at=None,
        )
        if not claimed:
            return None  # another worker took the job (or it was cancelled)
        return JobAttempt.objects.create(job=job, node=node, number=number)


def _containers(job: Job, node: Node) -> list[str]:
    return job.containers or [node.model_map[job.model]]


def _run_attempt(job: Job, attempt: JobAttempt, holder: str) -> None:
    node = attempt.node
    try:
        if job.is_private:
            stream = JobStream(node, private_push(job), path=PRIVATE_PUSH_PATH)
        else:
            stream = JobStream(node, {"containers": _containers(job, node), "data": job.container_data})
    except NodeRefused as exc:
        if job.is_private and exc.code:
            # the node would not open it (bad envelope, unknown key, expired, replayed): final
            _end_attempt(attempt, JobAttempt.Status.FAILED, str(exc))
            _fail_pinned(job, exc.code, str(exc), holder=holder, expected=RUNNING_STATES)
            return
        _fail_over(job, attempt, holder, str(exc))
        return
    except NodeUnreachable as exc:
        _fail_over(job, attempt, holder, str(exc))
        return
    try:
        _relay(job, attempt, holder, stream)
    finally:
        stream.close()


def _relay(job: Job, attempt: JobAttempt, holder: str, stream: JobStream) -> None:
    node = attempt.node
    final = None
    deadline = None
    next_tick = time.monotonic() + TICK_SECONDS
    while True:
        try:
            event = stream.events.get(timeout=TICK_SECONDS)
        except queue.Empty:
            event = None
        if event is not None:
            if event.kind == "id":
                attempt.node_job_id = str(event.value)
                attempt.save(update_fields=["node_job_id"])
                started = job_transition(
                    job=job, expected=JobStatus.ASSIGNED, new_status=JobStatus.RUNNING, holder=holder,
                    reason=f"running on node {node.public_id}", node_job_id=attempt.node_job_id,
                    started_at=timezone.now(),
                )
                if not started:
                    _stop_on_node(job, attempt, "the job was cancelled before it started")
                    return
                deadline = time.monotonic() + job.timeout_seconds
            elif event.kind == "chunk":
                publish_now(job.public_id, {"type": "output", "job_id": job.public_id, "data": event.value})
            elif event.kind == "result":
                final = event.value
            elif event.kind == "end":
                break
            else:
                _fail_over(job, attempt, holder, f"lost node {node.public_id} mid-job: {event.value}")
                return
        if time.monotonic() >= next_tick:
            next_tick = time.monotonic() + TICK_SECONDS
            if _stopped(job, attempt, holder):
                return
            if deadline is not None and time.monotonic() > deadline:
                _time_out(job, attempt, holder)
                return
            if attempt.node_job_id:
                _refresh_progress(job, attempt)
    if final is not None and final.get("id") == attempt.node_job_id and final.get("status") != "running":
        settle(job, attempt, holder, final)  # the node sent its result and receipt on the stream
    else:
        _settle_from_node(job, attempt, holder)


def _stopped(job: Job, attempt: JobAttempt, holder: str) -> bool:
    """Renew the lease and look around: True if the attempt must end here (and it was ended)."""
    verdict = _check(job, attempt, holder)
    if verdict == "cancelled":
        _stop_on_node(job, attempt, "cancelled by the customer")
    elif verdict == "node_lost":
        _fail_over(job, attempt, holder, f"node {attempt.node.public_id} stopped sending heartbeats")
    return verdict != "ok"  # "superseded": another worker holds the job now; leave it be


def _check(job: Job, attempt: JobAttempt, holder: str) -> str:
    renewed = Job.objects.filter(pk=job.pk, lease_owner=holder, status__in=RUNNING_STATES).update(
        lease_expires_at=timezone.now() + timedelta(seconds=LEASE_SECONDS)
    )
    if renewed == 0:
        status = Job.objects.filter(pk=job.pk).values_list("status", flat=True).first()
        return "cancelled" if status == JobStatus.CANCELLED else "superseded"
    heartbeat = Node.objects.filter(pk=attempt.node_id).values_list("last_heartbeat_at", flat=True).first()
    horizon = timezone.now() - timedelta(seconds=settings.NODE_OFFLINE_AFTER_SECONDS)
    if heartbeat is None or heartbeat < horizon:
        return "node_lost"
    return "ok"


def _refresh_progress(job: Job, attempt: JobAttempt) -> None:
    try:
        result = node_job_result(attempt.node, attempt.node_job_id)
    except NodeUnreachable:
        return  # the stream tells whether the node is really gone
    if not result:
        return
    progress = int(round(float(result.get("progress", 0)) * 100))
    if progress != job.progress and job.status == JobStatus.RUNNING:
        Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(progress=progress)
        job.progress = progress
        publish_now(job.public_id, {"type": "progress", "job_id": job.public_id, "progress": progress})


def _end_attempt(attempt: JobAttempt, status: str, error: str = "") -> None:
    JobAttempt.objects.filter(pk=attempt.pk).update(status=status, error=error[:2000], ended_at=timezone.now())
    wake_waiting_jobs(node=attempt.node, slots=1)


def wake_waiting_jobs(*, node: Node, slots: int) -> None:
    """Slots on ``node`` just became free (a job ended, the node came online): hand them to
    the oldest jobs waiting for one now, instead of letting them sleep out their retry delay."""
    from jobs.tasks import dispatch_job

    woken = 0
    waiting = Job.objects.filter(status=JobStatus.QUEUED).order_by("created_at")
    rows = waiting.values_list("pk", "model", "containers", "excluded_nodes", "pinned_node_id")[:200]
    for pk, model, containers, excluded, pinned in rows:
        if woken >= slots:
            return
        if pinned is not None and pinned != node.pk:
            continue
        fits = all(c in node.containers for c in containers) if containers else model in node.model_map
        if fits and node.public_id not in excluded:
            dispatch_job.send(pk)
            woken += 1


def _stop_on_node(job: Job, attempt: JobAttempt, why: str, status: str = JobAttempt.Status.CANCELLED) -> None:
    if attempt.node_job_id:
        try:
            node_job_cancel(attempt.node, attempt.node_job_id)
        except NodeUnreachable:
            log.warning("could not cancel %s on node %s", attempt.node_job_id, attempt.node.public_id)
    _end_attempt(attempt, status, why)


def _time_out(job: Job, attempt: JobAttempt, holder: str) -> None:
    message = f"timed out after {job.timeout_seconds} s"
    _stop_on_node(job, attempt, message, status=JobAttempt.Status.FAILED)
    job_transition(
        job=job, expected=RUNNING_STATES, new_status=JobStatus.FAILED, holder=holder, reason=message, error=message
    )


def _fail_over(job: Job, attempt: JobAttempt, holder: str, error: str) -> None:
    """The node failed the attempt: try another node, or give up after the last attempt."""
    from jobs.tasks import dispatch_job

    log.info("job %s: %s", job.public_id, error)
    _end_attempt(attempt, JobAttempt.Status.LOST, error)
    if job.pinned_node_id:
        # no failover: no other node holds the key a private request was sealed to, and a
        # subscription's interval runs on distinct nodes
        _fail_pinned(job, "no_healthy_candidates", error, holder=holder, expected=RUNNING_STATES)
        return
    if job.attempt_count >= settings.JOB_MAX_ATTEMPTS:
        job_transition(
            job=job, expected=RUNNING_STATES, new_status=JobStatus.FAILED, holder=holder,
            reason=f"gave up after {job.attempt_count} attempts; last: {error}", error=error,
        )
        return
    requeued = job_transition(
        job=job, expected=RUNNING_STATES, new_status=JobStatus.QUEUED, holder=holder,
        reason=f"{error}; trying another node",
        node=None, node_job_id="", started_at=None, progress=0, lease_owner="", lease_expires_at=None,
        excluded_nodes=[*job.excluded_nodes, attempt.node.public_id],
        next_dispatch_at=timezone.now() + REDISPATCH_GRACE,
    )
    if requeued:
        dispatch_job.send(job.pk)


def receipt_matches(*, receipt, node: Node, node_job_id: str, data, container_result) -> bool:
    """The node signed this result, for this job, over these very bytes."""
    if not isinstance(receipt, dict) or not verify_receipt(receipt, node.identity_public_key):
        return False
    body = receipt["body"]
    sha = lambda value: hashlib.sha256(json_bytes(value)).hexdigest()  # noqa: E731
    return (
        body.get("job_id") == node_job_id
        and body.get("request_ciphertext_sha256") == sha(data)
        and body.get("response_ciphertext_sha256") == sha(container_result)
    )


def _settle_from_node(job: Job, attempt: JobAttempt, holder: str) -> None:
    node = attempt.node
    try:
        result = node_job_result(node, attempt.node_job_id)
        for _ in range(20):  # the stream may end a moment before the node records the result
            if result is None or result.get("status") != "running":
                break
            time.sleep(0.05)
            result = node_job_result(node, attempt.node_job_id)
    except NodeUnreachable as exc:
        _fail_over(job, attempt, holder, str(exc))
        return
    if result is None or result.get("status") == "running":
        _fail_over(job, attempt, holder, f"node {node.public_id} lost job {attempt.node_job_id}")
        return
    settle(job, attempt, holder, result)


def settle(job: Job, attempt: JobAttempt, holder: str, result: dict) -> None:
    if job.is_private:
        _settle_private(job, attempt, holder, result)
        return
    node = attempt.node
    container_result = result.get("result") or {}
    receipt = result.get("receipt")
    verified = receipt_matches(
        receipt=receipt, node=node, node_job_id=attempt.node_job_id, data=job.container_data,
        container_result=container_result,
    )
    if result.get("status") == "success":
        if not verified:
            _fail_over(job, attempt, holder, f"node {node.public_id} sent a receipt that does not verify")
            return
        _end_attempt(attempt, JobAttempt.Status.SUCCEEDED)
        job_transition(
            job=job, expected=RUNNING_STATES, new_status=JobStatus.COMPLETED, holder=holder,
            reason=f"completed on node {node.public_id}", result=container_result.get("output"),
            intermediate_results=result.get("intermediate_results") or [],
            receipt=receipt, receipt_verified=True, receipt_hash=receipt["hash"], progress=100,
        )
        return
    if result.get("reason") == "cancelled":
        _fail_over(job, attempt, holder, f"node {node.public_id} cancelled the job")
        return
    error = str(container_result.get("error", "the container failed"))
    _end_attempt(attempt, JobAttempt.Status.FAILED, error)
    job_transition(
        job=job, expected=RUNNING_STATES, new_status=JobStatus.FAILED, holder=holder,
        reason=f"container {container_result.get('container', '?')} failed: {error}"[:300], error=error,
        receipt=receipt, receipt_verified=verified,
    )


def _settle_private(job: Job, attempt: JobAttempt, holder: str, result: dict) -> None:
    """Keep the sealed response only with a receipt that verifies; settle on success."""
    node = attempt.node
    if result.get("reason") == "cancelled":
        _fail_pinned(job, "cancelled_on_node", f"node {node.public_id} cancelled the job", holder=holder,
                      expected=RUNNING_STATES)
        _end_attempt(attempt, JobAttempt.Status.FAILED, "cancelled on the node")
        return
    try:
        checked = private_result_check(job=job, node=node, result=result)
    except TransportError as exc:
        _end_attempt(attempt, JobAttempt.Status.FAILED, str(exc))
        _fail_pinned(job, exc.code, f"node {node.public_id}: {exc}", holder=holder, expected=RUNNING_STATES)
        return
    succeeded = checked.status == "success"
    _end_attempt(attempt, JobAttempt.Status.SUCCEEDED if succeeded else JobAttempt.Status.FAILED)
    outcome = dict(
        encrypted_response=checked.encrypted_response, receipt=checked.receipt, receipt_verified=True,
        receipt_hash=checked.receipt_hash,
    )
    if succeeded:
        job_transition(job=job, expected=RUNNING_STATES, new_status=JobStatus.COMPLETED, holder=holder,
                       reason=f"completed on node {node.public_id}", progress=100, **outcome)
    else:
        job_transition(job=job, expected=RUNNING_STATES, new_status=JobStatus.FAILED, holder=holder,
                       reason=f"failed on node {node.public_id}; its error is sealed in encrypted_response",
                       error="the job failed on the node; the error is sealed to you in encrypted_response",
                       error_code="private_job_failed", **outcome)


def _recover(job: Job, holder: str) -> None:
    """Take over a job whose worker died: find out from the node how it went."""
    attempt = job.attempts.filter(status=JobAttempt.Status.RUNNING).select_related("node").last()
    if attempt is None:
        job_transition(
            job=job, expected=RUNNING_STATES, new_status=JobStatus.QUEUED, holder=holder,
            reason="the worker handling the job stopped; queued again", node=None, lease_owner="",
            lease_expires_at=None, next_dispatch_at=timezone.now(),
        )
        return
    if not attempt.node_job_id:
        _fail_over(job, attempt, holder, "the worker handling the job stopped before the node started it")
        return
    deadline = (job.started_at or timezone.now()) + timedelta(seconds=job.timeout_seconds)
    while True:
        try:
            result = node_job_result(attempt.node, attempt.node_job_id)
        except NodeUnreachable as exc:
            _fail_over(job, attempt, holder, str(exc))
            return
        if result is None:
            _fail_over(job, attempt, holder, f"node {attempt.node.public_id} lost job {attempt.node_job_id}")
            return
        if result.get("status") != "running":
            settle(job, attempt, holder, result)
            return
        if _stopped(job, attempt, holder):
            return
        if timezone.now() > deadline:
            _time_out(job, attempt, holder)
            return
        time.sleep(TICK_SECONDS)
