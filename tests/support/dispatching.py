"""The worker's part in in-process tests: scheduler passes and the watchdog, without a broker.

The broker is the edge here. A ``dispatch_job`` message runs a scheduler pass at
once in the sender's thread (what a worker would do a moment later), and the
watchdog sweeps in a background thread as a worker's sweeper does.
"""
from __future__ import annotations

import contextlib
import logging
import threading

from django.db import close_old_connections

from jobs.dispatch.watchdog import jobs_watch
from jobs.tasks import dispatch_job

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(self, sent: list | None = None, sweep_seconds: float = 0.2) -> None:
        self.sent = sent if sent is not None else []
        self.sweep_seconds = sweep_seconds
        self._stop = threading.Event()
        self._held = threading.Event()
        self._thread = threading.Thread(target=self._sweep, name="test-watchdog", daemon=True)

    def send(self, *args, **kwargs) -> None:
        self.sent.append(args)
        if self._held.is_set():
            return
        try:
            dispatch_job.fn(*args, **kwargs)  # the actor's body, as a worker runs it
        finally:
            close_old_connections()

    @contextlib.contextmanager
    def hold(self):
        """No scheduling and no sweeps inside: the worker is busy elsewhere (messages wait)."""
        self._held.set()
        try:
            yield
        finally:
            self._held.clear()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _sweep(self) -> None:
        while not self._stop.wait(self.sweep_seconds):
            if self._held.is_set():
                continue
            try:
                jobs_watch()
            except Exception:  # a sweep racing the test's own teardown; the next one runs
                log.warning("a test sweep failed", exc_info=True)
            finally:
                close_old_connections()
