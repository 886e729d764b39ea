"""Dramatiq actors of the jobs domain. They take ids, not objects, and do their work in services."""
from __future__ import annotations

import dramatiq
from django.conf import settings

from jobs.node_client import NodeUnreachable
from nodes.models import Node

# An actor relays its job to the end, so its time limit covers the longest job allowed.
DISPATCH_TIME_LIMIT_MS = (settings.MAX_TIMEOUT_SECONDS + 600) * 1000


@dramatiq.actor(
    queue_name=settings.DRAMATIQ_QUEUE,
    max_retries=3,
    min_backoff=500,
    max_backoff=5000,
    time_limit=DISPATCH_TIME_LIMIT_MS,
)
def dispatch_job(job_pk: int) -> None:
    from jobs.dispatch import dispatch

    dispatch(job_pk)


@dramatiq.actor(
    queue_name=settings.DRAMATIQ_QUEUE,
    max_retries=5,
    min_backoff=1000,
    max_backoff=30000,
    time_limit=60_000,
    throws=(Node.DoesNotExist,),
)
def cancel_on_node(node_public_id: str, node_job_id: str) -> None:
    from jobs.node_client import node_job_cancel

    node = Node.objects.get(public_id=node_public_id)
    try:
        node_job_cancel(node, node_job_id)
    except NodeUnreachable:
        raise  # retried with backoff: the node may come back
