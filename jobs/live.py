"""Live job events on the live bus: one topic per job (WebSocket, SSE and Infernet stream
clients subscribe), one per customer (the dashboard's jobs table).

Events are published after commit, so a subscriber never hears of a change that was
rolled back; a subscriber subscribes before it reads its snapshot, so it misses nothing.
"""
from __future__ import annotations

from django.db import transaction

from marketplace import live_bus


def job_topic(job_public_id: str) -> str:
    return f"job.{job_public_id}"


def customer_topic(customer_pk: int) -> str:
    """Every job of one customer: what the dashboard's jobs table listens to."""
    return f"customer.{customer_pk}"


def publish_now(job_public_id: str, event: dict) -> None:
    live_bus.publish(job_topic(job_public_id), event)


def send_to_channel(channel: str, message: dict) -> None:
    """To one node socket (its address on the bus), in order with everything else this process sends."""
    live_bus.publish(channel, message)


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
    topic = customer_topic(customer_pk)
    transaction.on_commit(lambda: live_bus.publish(topic, event))
