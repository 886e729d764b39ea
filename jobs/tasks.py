"""Dramatiq actors of the jobs domain: short tasks that take ids (or nothing) and call one service.

None of them waits for a job to finish: a running job is a row, and what happens
to it next arrives on its node's socket or is found by the watchdog.
"""
from __future__ import annotations

import dramatiq
from django.conf import settings

from jobs.dispatch.scheduler import schedule


@dramatiq.actor(queue_name=settings.DRAMATIQ_QUEUE, max_retries=3, min_backoff=200, max_backoff=2000,
                time_limit=60_000)
def dispatch_job(job_pk: int | None = None) -> None:
    """A job arrived (``job_pk``) or a slot freed (nothing): run a pass of the slot scheduler.

    Redelivery is harmless: a pass assigns only queued jobs, each once.
    """
    schedule()

