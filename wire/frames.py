"""The node socket's messages, shared by the agent and the marketplace.

A node dials the marketplace and keeps one WebSocket open (``/ws/nodes/``). It
authenticates the upgrade itself: its node token as a bearer, its node id, and
its Ed25519 signature over ``GET /ws/nodes/`` at a recent timestamp with a fresh
nonce (a signed upgrade sent twice is refused). Then every frame is one JSON object
with a ``type``:

node → marketplace
  hello      {capacity, running, results, transport_keys, unavailable?}: first frame after connecting
             (unavailable: model → why the node cannot run it now)
  heartbeat  {running, free, transport_keys?, gpus?}: gpus, each GPU's figures where nvidia-smi gives them
  accepted   {job_id, attempt, node_job_id}: the job started on the node
  refused    {job_id, attempt, code, error}: the node will not run it
  output     {job_id, attempt, data}: a chunk of the last container's output
  progress   {job_id, attempt, progress}: 0..1
  result     {job_id, attempt, result}: the node's final JobResult with its receipt

marketplace → node
  welcome    {node_id, heartbeat_interval_seconds}
  job        {job_id, attempt, containers, data, timeout_seconds} or {job_id, attempt, private}
  cancel     {job_id, attempt}
  ack        {job_id, attempt}: the result is recorded; the node may forget it

``(job_id, attempt)`` names one attempt: a result of an earlier attempt of the
same job is never mistaken for the current one. The node keeps each result until
it is acknowledged and sends it again after a reconnect, so a result produced
while the socket was down lands once.
"""
from __future__ import annotations

import json

from wire.bounded_json import JsonRejected, loads_bounded

SOCKET_PATH = "/ws/nodes/"
MAX_FRAME_BYTES = 16 * 1024 * 1024

NODE_TYPES = frozenset({"hello", "heartbeat", "accepted", "refused", "output", "progress", "result"})
MARKET_TYPES = frozenset({"welcome", "job", "cancel", "ack", "error"})


class FrameError(ValueError):
    """A frame that is not one bounded JSON object with a known type."""


def decode_frame(text: str | bytes, allowed: frozenset[str]) -> dict:
    """One frame, held to ``MAX_FRAME_BYTES`` and ``MAX_DEPTH`` before it is parsed, and to
    what can be stored after (``wire.bounded_json``)."""
    try:
        frame = loads_bounded(text, max_bytes=MAX_FRAME_BYTES)
    except JsonRejected as exc:
        raise FrameError(f"frame refused: {exc}") from None
    if not isinstance(frame, dict) or frame.get("type") not in allowed:
        raise FrameError("a frame is a JSON object with a known type")
    return frame


def encode_frame(frame: dict) -> str:
    return json.dumps(frame, separators=(",", ":"))


def attempt_key(frame: dict) -> tuple[str, int]:
    """The ``(job_id, attempt)`` a frame is about, or FrameError."""
    job_id, attempt = frame.get("job_id"), frame.get("attempt")
    if not isinstance(job_id, str) or not job_id or len(job_id) > 64:
        raise FrameError("job_id must be a job id")
    if isinstance(attempt, bool) or not isinstance(attempt, int) or not 0 < attempt < 1000:
        raise FrameError("attempt must be a positive integer")
    return job_id, attempt
