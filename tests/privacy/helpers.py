"""What the private-job tests do where a worker or an accountant would."""
import threading
import time

from billing.ledger import account_for_customer
from jobs.dispatch import dispatch
from jobs.models import Job, JobStatus


def run(job_id: str) -> Job:
    """What a worker does with the job's dispatch message."""
    job = Job.objects.get(public_id=job_id)
    dispatch(job.pk)
    job.refresh_from_db()
    return job


def balances(customer):
    account = account_for_customer(customer)
    account.refresh_from_db()
    return int(account.available_wei), int(account.reserved_wei)


def run_until_running(job_id: str) -> threading.Thread:
    """Dispatch in a worker thread, as a worker would; return once the job runs on its node."""
    worker = threading.Thread(target=run, args=(job_id,))
    worker.start()
    deadline = time.monotonic() + 20
    while Job.objects.get(public_id=job_id).status != JobStatus.RUNNING:
        assert time.monotonic() < deadline, "the job did not start on its node"
        time.sleep(0.05)
    return worker
