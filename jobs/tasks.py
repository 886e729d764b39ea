"""Dramatiq actors of the jobs domain: short tasks that take ids (or nothing) and call one service.

None of them waits for a job to finish: a running job is a row, and what happens
to it next arrives on its node's socket or is found by the watchdog.
"""
from __future__ import annotations

import dramatiq
from django.conf import settings

from jobs.dispatch.scheduler import schedule
from marketplace.shared_cache import cache_add, cache_delete_many

# a pass that met another runs again this much later, when the other has likely committed
AGAIN_AFTER_MS = 50
AGAIN_KEY = "scheduler-pass-again"
# a pass asked for and lost (its message dropped) blocks the next request no longer than this
AGAIN_HOLD_SECONDS = 2


@dramatiq.actor(queue_name=settings.DRAMATIQ_QUEUE, max_retries=3, min_backoff=200, max_backoff=2000,
                time_limit=60_000)
def dispatch_job(job_pk: int | None = None, again: bool = False) -> None:
    """A job arrived (``job_pk``) or a slot freed (nothing): run a pass of the slot scheduler.

    Redelivery is harmless: a pass assigns only queued jobs, each once. A pass that filled
    its batch asks for the next at once; one that met another pass asks for one more
    pass after it (``again``), one such request at a time.
    """
    if again:
        cache_delete_many([AGAIN_KEY])
    done = schedule()
    if done.full:
        dispatch_job.send()  # a backlog: the next batch now
    elif done.contended and cache_add(AGAIN_KEY, 1, timeout=AGAIN_HOLD_SECONDS):
        dispatch_job.send_with_options(kwargs={"again": True}, delay=AGAIN_AFTER_MS)

