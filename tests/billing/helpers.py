"""Moving test jobs through their ends the way dispatch does, without a node."""
from django.utils import timezone

from jobs.models import Job, JobStatus
from jobs.services.lifecycle import job_transition


def start(job: Job, node) -> Job:
    """Running on ``node`` since now (a cancel from here on is charged the time since)."""
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, node=node, started_at=timezone.now())
    job.refresh_from_db()
    return job


def complete(job: Job, node, duration_ms: int, verified: bool = True, status: str = JobStatus.COMPLETED) -> Job:
    """The node's signed end: a completion, or (``status=FAILED``) its container failing on the input."""
    start(job, node)
    receipt = {"body": {"duration_ms": str(duration_ms)}, "hash": f"h{job.pk}", "signature": "s", "signer": "k"}
    job_transition(job=job, expected=JobStatus.RUNNING, new_status=status, reason="done",
                   result={"ok": True}, receipt=receipt, receipt_verified=verified, receipt_hash=receipt["hash"])
    job.refresh_from_db()
    return job


def end(job: Job, status: str, node=None) -> Job:
    if node is not None:
        start(job, node)
    job_transition(job=job, expected={JobStatus.QUEUED, JobStatus.ASSIGNED, JobStatus.RUNNING}, new_status=status,
                   reason=f"test: {status}")
    job.refresh_from_db()
    return job
