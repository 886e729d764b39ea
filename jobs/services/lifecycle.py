"""Guarded transitions of a job's status.

Every change is ``UPDATE ... WHERE status IN (<expected>)``: two workers (or a
worker and a cancelling customer) may race, and the guarded update lets exactly
one win. Each transition writes a JobEvent and, after commit, a live event.
"""
from __future__ import annotations

from contextlib import nullcontext

from django.db import connection, transaction
from django.utils import timezone

from jobs.services.money import job_billing_close
from jobs.exceptions import JobStateConflict
from jobs.live import publish_after_commit, publish_job_row_after_commit, publish_row_after_commit
from jobs.dispatch.node_channel import cancel_on_node
from jobs.models import ACTIVE, TERMINAL, Job, JobAttempt, JobEvent, JobStatus
from marketplace.rows import insert_row, marks, update_then_insert, update_where


def job_status_event(job: Job) -> dict:
    event = {
        "type": "status",
        "job_id": job.public_id,
        "status": job.status,
        "progress": job.progress,
        "reason": job.status_reason,
    }
    if job.status in TERMINAL:
        event.update(result=job.result, error=job.error or None)
    return event


def job_transition(*, job: Job, expected, new_status: str, reason: str = "", **fields) -> bool:
    """Move ``job`` from one of ``expected`` to ``new_status``; False if it was not there any more."""
    # no savepoint inside a caller's transaction: nothing here is retried on its own, and a
    # failure spoils the caller's work anyway (two statements fewer per transition)
    with transaction.atomic(savepoint=False):
        return _transition(job, expected, new_status, reason, fields)


def _transition(job: Job, expected, new_status: str, reason: str, fields: dict) -> bool:
    expected = {expected} if isinstance(expected, str) else set(expected)
    now = timezone.now()
    if new_status in TERMINAL:
        fields.setdefault("completed_at", now)
    expected = sorted(expected)
    event = {"old_status": job.status, "new_status": new_status, "reason": reason[:300], "created_at": now}
    if not _update_with_event(job.pk, {"status": new_status, "status_reason": reason[:300], **fields},
                              f"status IN ({marks(expected)})", expected, event):
        return False
    # what the guarded update wrote, applied to the object the caller holds (no re-read)
    job.status, job.status_reason = new_status, reason[:300]
    for name, value in fields.items():
        setattr(job, name, value)
    if new_status in TERMINAL:
        # every way a job ends closes its bill, in the same transaction
        job_billing_close(job=job)
    if new_status == JobStatus.COMPLETED and job.subscription_id:
        from jobs.subscriptions.delivery import subscription_deliver_after_commit

        subscription_deliver_after_commit(job)
    publish_after_commit(job.public_id, job_status_event(job))
    publish_job_row_after_commit(job)
    return True


def job_start(*, job_pk: int, job_id: str, node_pk: int, number: int, node_job_id: str, reason: str,
              row: dict | None = None) -> bool:
    """assigned → running, for the node that holds the attempt; False if that is not the job's state.

    The node's acceptance is the hottest transition of all, so it reads nothing: the
    guarded update names the job, its node and its attempt, and the event and the live
    messages are made from what the caller already knows (``row``: the dashboard's row).
    """
    now = timezone.now()
    # on PostgreSQL one statement, its own transaction: no BEGIN and COMMIT around it
    with transaction.atomic(savepoint=False) if connection.vendor != "postgresql" else nullcontext():
        started = _update_with_event(
            job_pk, {"status": JobStatus.RUNNING, "status_reason": reason[:300], "node_job_id": node_job_id[:64],
             "started_at": now},
            "public_id = %s AND node_id = %s AND attempt_count = %s AND status = %s",
            [job_id, node_pk, number, JobStatus.ASSIGNED],
            {"old_status": JobStatus.ASSIGNED, "new_status": JobStatus.RUNNING, "reason": reason[:300],
             "created_at": now})
    if not started:
        return False
    publish_after_commit(job_id, {"type": "status", "job_id": job_id, "status": JobStatus.RUNNING, "progress": 0,
                                  "reason": reason[:300]})
    if row is not None:
        publish_row_after_commit(row["customer"], {**row["event"], "status": JobStatus.RUNNING})
    return True


def _update_with_event(job_pk: int, values: dict, guard: str, params: list, event: dict) -> bool:
    """Update job ``job_pk`` where ``guard`` holds and, if that changed it, write its JobEvent;
    False if it did not.

    One statement on PostgreSQL (the event is inserted from the updated row), two
    elsewhere. Written out: the ORM compiles an update and a create on every call.
    """
    where, params = f"id = %s AND {guard}", [job_pk, *params]
    if connection.vendor == "postgresql":
        return update_then_insert(Job, values, where, params, JobEvent, event, link="job") == 1
    if update_where(Job, values, where, params) != 1:
        return False
    insert_row(JobEvent, {"job_id": job_pk, **event})
    return True


def job_cancel(*, job: Job, by: str = "the customer") -> Job:
    """Cancel a job that has not finished; idempotent for a job already cancelled.

    The job ends here, at once; its node is told to stop after commit, and whatever
    it sends for the attempt afterwards changes nothing.
    """
    if job.status == JobStatus.CANCELLED:
        return job
    if job.status in TERMINAL:
        raise JobStateConflict(f"job {job.public_id} already finished ({job.status}); it cannot be cancelled")
    with transaction.atomic():
        if not job_transition(job=job, expected=ACTIVE, new_status=JobStatus.CANCELLED, reason=f"cancelled by {by}"):
            job.refresh_from_db()
            if job.status == JobStatus.CANCELLED:
                return job
            raise JobStateConflict(f"job {job.public_id} already finished ({job.status}); it cannot be cancelled")
        JobAttempt.objects.filter(job=job, number=job.attempt_count, status=JobAttempt.Status.RUNNING).update(
            status=JobAttempt.Status.CANCELLED, error=f"cancelled by {by}", ended_at=timezone.now()
        )
        cancel_on_node(job)
    return job
