"""Dramatiq actors of the jobs domain: short tasks that take ids (or nothing) and call one service.

None of them waits for a job to finish: a running job is a row, and what happens
to it next arrives on its node's socket or is found by the watchdog. A job's own
arrival, and a slot freed by a result, run a scheduler pass where they happen
(``schedule_here``); a backlog, a node's arrival or a failed pass asks a worker
(``schedule_soon``).
"""
from __future__ import annotations

import logging

import dramatiq
from django.conf import settings

from jobs.dispatch.scheduler import free_slot_exists, schedule, slots_may_be_full
from marketplace.shared_cache import cache_add, cache_delete_many

log = logging.getLogger(__name__)

# a pass that met another runs again this much later, when the other has likely committed
AGAIN_AFTER_MS = 50
AGAIN_KEY = "scheduler-pass-again"
# a pass asked for and lost (its message dropped) blocks the next request no longer than this
AGAIN_HOLD_SECONDS = 2
# a pass asked for and not yet begun answers every request made meanwhile; one whose message
# was lost holds the next request back no longer than this (the watchdog's sweep passes too)
PENDING_KEY = "scheduler-pass-pending"
PENDING_HOLD_SECONDS = 2


def schedule_soon() -> None:
    """A job arrived or a slot freed: ask a worker for a scheduler pass, unless a pass asked for
    earlier has not begun. That pass takes its flag down before it reads the queue, so it sees
    every job committed before this call: under load, one message serves many arrivals."""
    if cache_add(PENDING_KEY, 1, timeout=PENDING_HOLD_SECONDS):
        try:
            dispatch_job.send()
        except Exception as exc:  # noqa: BLE001  (whatever the broker raises, the caller's work stands)
            # the broker is down: the job is committed and queued, and the watchdog's sweep (in
            # every worker, every 2 s, no broker needed) passes meanwhile; the next request tries again
            log.warning("could not ask a worker for a scheduler pass (%s: %s); the sweep will",
                        type(exc).__name__, exc)
            cache_delete_many([PENDING_KEY])


def schedule_here() -> None:
    """A job was just committed, or a slot just freed: a scheduler pass runs here, in the
    request or the socket that saw it, so the job a free slot fits is on its node's socket at
    once, with no broker message and no worker in between. It waits for nodes another pass
    holds rather than hand its work to a worker; a pass that filled its batch or failed leaves
    the rest to a worker's pass (``schedule_soon``): the job is committed and queued whatever
    happens here."""
    try:
        if slots_may_be_full() and not free_slot_exists():
            return  # every slot is busy: the one that frees first runs the pass this job needs
        done = schedule(wait=True)
    except Exception:  # the caller's own work is committed and answered: a worker retries
        log.exception("a scheduler pass failed; a worker's pass takes over")
        done = None
    if done is None or done.full or done.contended:
        schedule_soon()


@dramatiq.actor(queue_name=settings.DRAMATIQ_QUEUE, max_retries=3, min_backoff=200, max_backoff=2000,
                time_limit=60_000)
def dispatch_job(job_pk: int | None = None, again: bool = False) -> None:
    """A job arrived or a slot freed (``schedule_soon``): run a pass of the slot scheduler.
    (``job_pk`` is what earlier releases sent; a pass takes every job that fits.)

    Redelivery is harmless: a pass assigns only queued jobs, each once. A pass that filled
    its batch asks for the next at once; one that met another pass asks for one more
    pass after it (``again``), one such request at a time.
    """
    # down before the queue is read: a request refused while it was up is this pass's to serve
    cache_delete_many([AGAIN_KEY, PENDING_KEY] if again else [PENDING_KEY])
    done = schedule()
    if done.full:
        dispatch_job.send()  # a backlog: the next batch now
    elif done.contended and cache_add(AGAIN_KEY, 1, timeout=AGAIN_HOLD_SECONDS):
        dispatch_job.send_with_options(kwargs={"again": True}, delay=AGAIN_AFTER_MS)

