"""A marketplace job as Infernet's ``JobResult``."""
from __future__ import annotations

from jobs.models import Job, JobStatus

INFERNET_STATUS = {
    JobStatus.QUEUED: "running",
    JobStatus.ASSIGNED: "running",
    JobStatus.RUNNING: "running",
    JobStatus.COMPLETED: "success",
}


def infernet_status(job: Job) -> str:
    return INFERNET_STATUS.get(job.status, "failed")


def job_result(job: Job, intermediate: bool = False) -> dict:
    status = infernet_status(job)
    last = job.containers[-1] if job.containers else job.model
    if status == "success":
        result = {"container": last, "output": job.result}
    elif status == "failed":
        result = {"container": last, "error": job.error or job.status_reason or job.status}
    else:
        result = None
    body = {"id": job.public_id, "status": status, "result": result}
    if intermediate:
        body["intermediate_results"] = list(job.intermediate_results or [])
    return body
