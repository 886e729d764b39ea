"""Live job events over the channel layer: one group per job, joined by WebSocket and SSE clients."""
from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)


def job_group(job_public_id: str) -> str:
    return f"job_{job_public_id}"


def publish_now(job_public_id: str, event: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    log.debug("publish %s %s", job_public_id, event.get("type"))
    try:
        async_to_sync(layer.group_send)(job_group(job_public_id), {"type": "job.event", "event": event})
    except Exception:  # live output is best effort; the job itself must go on
        log.warning("could not publish an event for %s", job_public_id, exc_info=True)


def publish_after_commit(job_public_id: str, event: dict) -> None:
    transaction.on_commit(lambda: publish_now(job_public_id, event))
