"""The sweep every worker process runs in the background: nothing is left waiting forever.

It runs the watchdog (``jobs.dispatch.watchdog``: deadlines, silent nodes, jobs
nobody took, scheduling messages that went missing) and starts delegated
subscriptions' intervals as they fall due. Every action is idempotent, so several
workers sweeping at once is harmless.
"""
from __future__ import annotations

import logging
import threading

import dramatiq
from django.db import close_old_connections
from django.utils import timezone

log = logging.getLogger(__name__)

SWEEP_SECONDS = 2.0


def jobs_sweep() -> int:
    from jobs.dispatch.watchdog import jobs_watch
    from jobs.subscriptions.services import subscriptions_run_due

    # delegated subscriptions whose next interval has fallen due, then the deadlines
    return subscriptions_run_due(now=timezone.now()) + jobs_watch()


def _my_turn(interval: float) -> bool:
    """One sweep per interval across every worker process (the cache is shared): N workers
    cost the database what one does. With the cache down, every worker sweeps (harmless)."""
    from marketplace.shared_cache import cache_add

    return cache_add("jobs-sweep-turn", 1, timeout=max(interval * 0.9, 0.5))


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
            if not _my_turn(self.interval):
                continue
            try:
                jobs_sweep()
            except Exception:
                log.exception("the job sweep failed; it runs again shortly")
            finally:
                close_old_connections()
