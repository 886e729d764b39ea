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
        self._put(("group_send", group, message))

    def send(self, channel: str, message: dict) -> None:
        """To one channel (a node socket's consumer), in order with everything else sent here."""
        self._put(("send", channel, message))

    def _put(self, item: tuple) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="job-events", daemon=True)
                    self._thread.start()
        self._queue.put(item)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        while True:
            method, target, message = self._queue.get()
            layer = get_channel_layer()
            if layer is None:
                continue
            try:
                loop.run_until_complete(getattr(layer, method)(target, message))
            except Exception:  # best effort: live output is lossy, and a lost frame to a node is
                # caught by the watchdog (an assignment never accepted is taken back)
                log.warning("could not %s to %s", method, target, exc_info=True)


_publisher = _Publisher()


def publish_now(job_public_id: str, event: dict) -> None:
    _publisher.publish(job_group(job_public_id), {"type": "job.event", "event": event})


def send_to_channel(channel: str, message: dict) -> None:
    _publisher.send(channel, message)


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
    publish_row_after_commit(job.customer_id, job_row_event(job))


def publish_row_after_commit(customer_pk: int, event: dict) -> None:
    group = customer_group(customer_pk)
    transaction.on_commit(lambda: _publisher.publish(group, {"type": "job.event", "event": event}))
