"""What the private-job tests do where a worker or an accountant would."""
from billing.ledger import account_for_customer
from jobs.dispatch import dispatch
from jobs.models import Job


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
