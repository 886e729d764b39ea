"""Frames to a node, from any process: through the channel layer to its socket's consumer.

Sent after commit, so a node never hears of a change that was rolled back. The
channel layer may drop a frame (the consumer died with it); the watchdog takes
back an assignment that is never accepted, and a reconnecting node's hello
settles what each side holds.
"""
from __future__ import annotations

from django.db import transaction

from jobs.live import send_to_channel


def node_send_after_commit(channel: str, frame: dict, ref: dict | None = None) -> None:
    """``ref`` travels to the consumer only (never to the node): what it needs to record the
    node's answers without reading the job first."""
    if channel:
        message = {"type": "node.frame", "frame": frame}
        if ref is not None:
            message["ref"] = ref
        transaction.on_commit(lambda: send_to_channel(channel, message))


def cancel_on_node(job) -> None:
    """Tell the job's node to stop its current attempt, if its socket is open."""
    if job.node_id:
        frame = {"type": "cancel", "job_id": job.public_id, "attempt": job.attempt_count}
        node_send_after_commit(job.node.channel_name, frame)
