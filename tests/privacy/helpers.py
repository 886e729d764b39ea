"""What the private-job tests do where a customer or an accountant would.

The ``dispatcher`` fixture is the worker: scheduler passes and the watchdog.
"""
from billing.ledger import account_for_customer
from jobs.models import TERMINAL, Job, JobStatus
from tests.support.waiting import wait_for


def run(job_id: str, timeout: float = 30) -> Job:
    """Wait for the job to end, as a customer polling it would."""
    return wait_for(lambda: (job := Job.objects.get(public_id=job_id)).status in TERMINAL and job, timeout=timeout,
                    message=f"job {job_id} did not end: {Job.objects.get(public_id=job_id).status_reason}")


def balances(customer):
    account = account_for_customer(customer)
    account.refresh_from_db()
    return int(account.available_wei), int(account.reserved_wei)


class _Ending:
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id

    def join(self, timeout: float = 30) -> None:
        run(self.job_id, timeout)


def run_until_running(job_id: str) -> _Ending:
    """Return once the job runs on its node; ``.join()`` waits for its end."""
    wait_for(lambda: Job.objects.get(public_id=job_id).status == JobStatus.RUNNING, timeout=20,
             message="the job did not start on its node")
    return _Ending(job_id)
