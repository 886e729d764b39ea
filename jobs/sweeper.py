"""The sweep every worker process runs in the background: nothing is left waiting forever.

It re-sends dispatch for jobs whose worker lost its lease (that worker died) and
for queued jobs whose message went missing, and expires jobs no node took in
time. Every action is idempotent, so several workers sweeping at once is harmless.
"""
from __future__ import annotations

import logging
import threading

import dramatiq
from django.db import close_old_connections, transaction
from django.utils import timezone

log = logging.getLogger(__name__)

SWEEP_SECONDS = 2.0
BATCH = 200


def jobs_sweep() -> int:
    from jobs.dispatch import REDISPATCH_GRACE, job_expire
    from billing.services import job_billing_close
    from jobs.models import TERMINAL, BillingStatus, Job, JobStatus
    from jobs.selectors import jobs_due_for_dispatch, jobs_with_expired_leases
    from jobs.subscriptions.services import subscriptions_run_due
    from jobs.tasks import dispatch_job

    now = timezone.now()
    actions = 0
    for job in Job.objects.filter(status=JobStatus.QUEUED, queue_deadline__lt=now)[:BATCH]:
        job_expire(job)
        actions += 1
    for pk in jobs_with_expired_leases(now=now).values_list("pk", flat=True)[:BATCH]:
        dispatch_job.send(pk)
        actions += 1
    for pk in jobs_due_for_dispatch(now=now).values_list("pk", flat=True)[:BATCH]:
        Job.objects.filter(pk=pk).update(next_dispatch_at=now + REDISPATCH_GRACE)
        dispatch_job.send(pk)
        actions += 1
    # a finished job whose bill is still open (none should be: ending closes it in the
    # same transaction) has its reservation released, so no funds stay held forever
    for job in Job.objects.filter(status__in=TERMINAL, billing_status=BillingStatus.RESERVED)[:BATCH]:
        with transaction.atomic():
            job_billing_close(job=job)
        actions += 1
    # delegated subscriptions whose next interval has fallen due
    actions += subscriptions_run_due(now=now)
    return actions


class SweeperMiddleware(dramatiq.Middleware):
    def __init__(self, interval: float = SWEEP_SECONDS) -> None:
        self.interval = interval
        self._stop = threading.Event()

    def after_worker_boot(self, broker, worker):
        self._stop.clear()
        threading.Thread(target=self._loop, name="jobs-sweeper", daemon=True).start()

    def before_worker_shutdown(self, broker, worker):
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                jobs_sweep()
            except Exception:
                log.exception("the job sweep failed; it runs again shortly")
            finally:
                close_old_connections()
