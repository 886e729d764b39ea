"""Live job events over the channel layer: one group per job, joined by WebSocket and SSE clients.

Events are handed to one publisher thread per process, which keeps its own event
loop: workers never wait on the channel layer, events keep their order, and the
Redis layer reuses its connections instead of opening new ones for every event
(as ``async_to_sync`` with a fresh loop per call would).
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading

from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)


def job_group(job_public_id: str) -> str:
    return f"job_{job_public_id}"


def customer_group(customer_pk: int) -> str:
    """Every job of one customer: what the dashboard's jobs table listens to."""
    return f"customer_{customer_pk}"


class _Publisher:
    def __init__(self) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def publish(self, group: str, message: dict) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="job-events", daemon=True)
                    self._thread.start()
        self._queue.put((group, message))

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        while True:
            group, message = self._queue.get()
            layer = get_channel_layer()
            if layer is None:
                continue
            try:
                loop.run_until_complete(layer.group_send(group, message))
            except Exception:  # live output is best effort; the job itself goes on
                log.warning("could not publish an event to %s", group, exc_info=True)


_publisher = _Publisher()


def publish_now(job_public_id: str, event: dict) -> None:
    _publisher.publish(job_group(job_public_id), {"type": "job.event", "event": event})


def publish_after_commit(job_public_id: str, event: dict) -> None:
    transaction.on_commit(lambda: publish_now(job_public_id, event))


def job_row_event(job) -> dict:
    """A job as the dashboard's table shows it: status only, never input or output."""
    return {
        "type": "job",
        "job_id": job.public_id,
        "status": job.status,
        "progress": job.progress,
        "model": job.model or ",".join(job.containers or []),
        "private": job.is_private,
        "created_at": job.created_at.isoformat().replace("+00:00", "Z") if job.created_at else None,
    }


def publish_job_row_after_commit(job) -> None:
    event = job_row_event(job)
    group = customer_group(job.customer_id)
    transaction.on_commit(lambda: _publisher.publish(group, {"type": "job.event", "event": event}))
