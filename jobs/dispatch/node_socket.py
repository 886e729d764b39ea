"""The node socket: each node's one WebSocket to the marketplace (``/ws/nodes/``).

The node dials in, so it needs no inbound port and the marketplace never fetches
an address a node gave. The upgrade is authenticated before it is accepted (node
token, node id, and an Ed25519 signature over ``GET /ws/nodes/`` at a recent
timestamp). Jobs come from the scheduler over the live bus (the socket subscribes to
an address of its own, kept on the node's row) and go down as frames; what the node
says comes up and is handed to ``jobs.dispatch.attempts``.

Output and progress are relayed straight to the job's live topic, without the
database, but only for attempts this socket was given or the node's hello proved
it holds: a node cannot write into another customer's job.

A heartbeat is recorded as it arrives. Every other frame goes through the
socket's own queue, handled one at a time in the order the node sent them: when
the marketplace is slow to settle a burst of results, the node's heartbeats do
not wait behind them, and the watchdog does not take a busy node for a silent one.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError

from jobs.dispatch.attempts import (
    ForeignAttempt, Outcome, attempt_abandoned, attempt_accepted, attempt_refused, attempt_result,
)
from jobs.dispatch.scheduler import jobs_waiting
from jobs.live import job_topic, send_to_channel
from jobs.models import ON_NODE, Job, JobStatus
from jobs.tasks import schedule_here, schedule_soon
from marketplace import live_bus
from marketplace.consumers import DirectDispatch
from nodes.exceptions import NodeAuthenticationFailed, NodeRequestInvalid
from nodes.models import Node
from nodes.services import gpu_stats_check, node_attach, node_authenticate, node_beat, node_detach, node_heartbeat
from wire.frames import NODE_TYPES, SOCKET_PATH, FrameError, attempt_key, decode_frame, encode_frame

log = logging.getLogger(__name__)

MAX_OUTPUT_CHARS = 64 * 1024
PROGRESS_WRITE_SECONDS = 1.0
# a node that keeps sending frames that do not parse is cut off
MAX_BAD_FRAMES = 20
# the most attempts a hello may list (a node runs at most MAX_CAPACITY at once)
MAX_LISTED = 10_000
# frames waiting for their turn; a node further ahead than this is read no faster than it is served
MAX_QUEUED_FRAMES = 1_000


class _Headers:
    def __init__(self, scope) -> None:
        self._items = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}

    def get(self, name: str, default: str = "") -> str:
        return self._items.get(name.lower(), default)


def _off_thread(function):
    # node frames need no ordering with the web's own requests: a pool, not the one shared thread
    return database_sync_to_async(function, thread_sensitive=False)


@_off_thread
def _authenticate(headers: _Headers) -> Node:
    return node_authenticate(node_id=headers.get("X-Node-Id"), headers=headers, method="GET",
                             path=SOCKET_PATH, body=b"")


@_off_thread
def _attach(node: Node, channel_name: str) -> str:
    return node_attach(node=node, channel_name=channel_name)


@_off_thread
def _detach(node_pk: int, channel_name: str) -> None:
    node_detach(node_pk=node_pk, channel_name=channel_name)


def _listed(frame: dict, name: str) -> list:
    """A list the node sent, bounded; anything else counts as empty."""
    value = frame.get(name)
    return value[:MAX_LISTED] if isinstance(value, list) else []


def _attempt_keys(items: list) -> set[tuple[str, int]]:
    keys = set()
    for item in items:
        try:
            keys.add(attempt_key(item))
        except (FrameError, AttributeError):
            continue  # one malformed entry does not spoil the rest
    return keys


@_off_thread
def _hello(node_pk: int, frame: dict, connected_at: float) -> tuple[set, list]:
    """Record the node's report and square its jobs with ours: (attempts it holds that are its
    own, attempts it holds that are not, to cancel). Jobs we gave it before this socket that it
    no longer holds were lost with its restart: they run again, on it too."""
    node = Node.objects.get(pk=node_pk)
    report = {k: frame[k] for k in ("capacity", "transport_keys") if k in frame}
    # each hello says anew what the node cannot run (an agent that says nothing can run it all)
    report["unavailable"] = frame.get("unavailable", {})
    node_heartbeat(node=node, report=report)
    held = _attempt_keys(_listed(frame, "running"))
    reported = held | _attempt_keys(_listed(frame, "results"))
    ours = set()
    for job in Job.objects.filter(node_id=node_pk, status__is_in=ON_NODE).select_related("node"):
        key = (job.public_id, job.attempt_count)
        if key in reported:
            ours.add(key)
        elif job.assigned_at and job.assigned_at.timestamp() < connected_at:
            attempt_abandoned(job=job, error=f"node {node.public_id} restarted and lost the job", strike=False,
                              exclude=False)
    return held & ours, sorted(held - ours)


@_off_thread
def _progress(job_id: str, node_pk: int, number: int, percent: int) -> None:
    Job.objects.filter(public_id=job_id, node_id=node_pk, attempt_count=number, status=JobStatus.RUNNING,
                       progress__lt=percent).update(progress=percent)


def _fill_freed_slot() -> None:
    """A result or a refusal freed a slot: if a job waits, a pass runs here and now."""
    try:
        waiting = jobs_waiting()
    except DatabaseError:
        waiting = True  # the pass finds out, or hands the work to a worker
    if waiting:
        schedule_here()


_schedule_freed = _off_thread(_fill_freed_slot)


@_off_thread
def _settle_then_fill(**result) -> Outcome:
    """Settle a result, then give the slot it freed to a waiting job: one trip off the loop."""
    outcome = attempt_result(**result)
    if outcome.freed:
        _fill_freed_slot()
    return outcome


@_off_thread
def _schedule_soon() -> None:
    """A node came: a worker's pass gives it the jobs that wait."""
    schedule_soon()


class NodeSocketConsumer(DirectDispatch, AsyncWebsocketConsumer):
    async def connect(self):
        try:
            node = await _authenticate(_Headers(self.scope))
        except (NodeAuthenticationFailed, NodeRequestInvalid) as exc:
            log.info("node socket refused: %s", exc)
            await self.close(code=4401)
            return
        if node.approval == Node.Approval.SUSPENDED:
            await self.close(code=4403)
            return
        self.node_pk, self.node_id = node.pk, node.public_id
        # the attempts this socket may speak for, with what the scheduler told about each
        self.attempts: dict[tuple[str, int], dict | None] = {}
        self.progress_written: dict[tuple[str, int], float] = {}
        self.bad_frames = 0
        self.connected_at = time.time()
        self.frames: asyncio.Queue[dict] = asyncio.Queue(MAX_QUEUED_FRAMES)
        # the socket's address on the live bus: subscribed before the scheduler can learn it
        self.channel_name = f"node-socket.{uuid.uuid4().hex}"
        try:
            self.subscription = await live_bus.subscribe(self.channel_name)
        except live_bus.LiveBusUnavailable:
            await self.close(code=1013)  # try again later: jobs could not reach it
            return
        self.pump = live_bus.pump(self.subscription, self._from_marketplace)
        self.handler = asyncio.get_running_loop().create_task(self._handle_in_order())
        await self.accept()
        previous = await _attach(node, self.channel_name)
        if previous:
            # the node reconnected while its old socket looked open: that one is closed
            send_to_channel(previous, {"type": "node.superseded"})
        await self._send({"type": "welcome", "node_id": node.public_id,
                          "heartbeat_interval_seconds": settings.NODE_HEARTBEAT_SECONDS})

    async def disconnect(self, code):
        if hasattr(self, "pump"):
            self.pump.cancel()
            await self.subscription.close()
        if hasattr(self, "handler"):
            # frames not handled yet are dropped: the node offers its unacknowledged results again
            self.handler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.handler
            await _detach(self.node_pk, self.channel_name)

    async def _send(self, frame: dict) -> None:
        await self.send(text_data=encode_frame(frame))

    async def receive(self, text_data=None, bytes_data=None):
        try:
            frame = decode_frame(text_data if text_data is not None else bytes_data or b"", NODE_TYPES)
        except FrameError as exc:
            await self._bad_frame(exc)
            return
        if frame["type"] == "heartbeat":
            await self._handle(frame)
        else:
            await self.frames.put(frame)

    async def _handle_in_order(self) -> None:
        while True:
            frame = await self.frames.get()
            try:
                await self._handle(frame)
            except Exception:
                # one frame's failure (the database, say) is not the socket's end: the node
                # offers an unacknowledged result again, the watchdog takes back the rest
                log.exception("node %s: a %s frame failed", self.node_id, frame["type"])

    async def _handle(self, frame: dict) -> None:
        try:
            await getattr(self, f"on_{frame['type']}")(frame)
        except (FrameError, NodeRequestInvalid) as exc:
            await self._bad_frame(exc)

    async def _bad_frame(self, exc: Exception) -> None:
        self.bad_frames += 1
        await self._send({"type": "error", "error": str(exc)})
        if self.bad_frames > MAX_BAD_FRAMES:
            await self.close(code=4400)

    # --- frames from the node -------------------------------------------------------------

    async def on_hello(self, frame: dict) -> None:
        try:
            held, strangers = await _hello(self.node_pk, frame, self.connected_at)
        except NodeRequestInvalid as exc:
            await self._send({"type": "error", "error": str(exc)})
            await self.close(code=4400)
            return
        for key in held:
            self.attempts.setdefault(key, None)
        for job_id, number in strangers:
            await self._send({"type": "cancel", "job_id": job_id, "attempt": number})
        for item in _listed(frame, "results"):
            if isinstance(item, dict):
                await self.on_result({"type": "result", **item})
        await _schedule_soon()

    async def on_heartbeat(self, frame: dict) -> None:
        if "transport_keys" in frame or "capacity" in frame:
            await _off_thread(self._report)(frame)
        # only attempts this socket was given or the hello proved: a node vouches for its own
        running = sorted([job_id, number] for job_id, number in _attempt_keys(_listed(frame, "running"))
                         if (job_id, number) in self.attempts)
        gpus = gpu_stats_check(frame["gpus"]) if "gpus" in frame else None
        await _off_thread(node_beat)(node_pk=self.node_pk, running=running, gpus=gpus)

    def _report(self, frame: dict) -> None:
        node = Node.objects.get(pk=self.node_pk)
        node_heartbeat(node=node, report={k: frame[k] for k in ("capacity", "transport_keys") if k in frame})

    async def on_accepted(self, frame: dict) -> None:
        job_id, number = attempt_key(frame)
        node_job_id = frame.get("node_job_id")
        if not isinstance(node_job_id, str):
            raise FrameError("node_job_id must be a string")
        outcome = await _off_thread(attempt_accepted)(
            node_pk=self.node_pk, node_id=self.node_id, job_id=job_id, number=number, node_job_id=node_job_id,
            ref=self.attempts.get((job_id, number)),
        )
        if outcome.cancel:
            self.attempts.pop((job_id, number), None)
            await self._send({"type": "cancel", "job_id": job_id, "attempt": number})

    async def on_refused(self, frame: dict) -> None:
        job_id, number = attempt_key(frame)
        self.attempts.pop((job_id, number), None)
        outcome = await _off_thread(attempt_refused)(
            node_pk=self.node_pk, job_id=job_id, number=number, code=str(frame.get("code", ""))[:40],
            error=str(frame.get("error", ""))[:300],
        )
        if outcome.freed:
            await _schedule_freed()

    async def on_output(self, frame: dict) -> None:
        key = attempt_key(frame)
        data = frame.get("data")
        if key not in self.attempts or not isinstance(data, str):
            return  # not this node's job (or not text): never relayed
        live_bus.publish(job_topic(key[0]), {"type": "output", "job_id": key[0], "data": data[:MAX_OUTPUT_CHARS]})

    async def on_progress(self, frame: dict) -> None:
        key = attempt_key(frame)
        value = frame.get("progress")
        if key not in self.attempts or isinstance(value, bool) or not isinstance(value, (int, float)):
            return
        percent = max(0, min(99, int(value * 100)))
        live_bus.publish(job_topic(key[0]), {"type": "progress", "job_id": key[0], "progress": percent})
        now = time.monotonic()
        if now - self.progress_written.get(key, 0.0) >= PROGRESS_WRITE_SECONDS:
            # the record's progress (GET /v1/jobs/{id}) follows at most once a second
            self.progress_written[key] = now
            await _progress(key[0], self.node_pk, key[1], percent)

    async def on_result(self, frame: dict) -> None:
        job_id, number = attempt_key(frame)
        result = frame.get("result")
        try:
            await _settle_then_fill(node_pk=self.node_pk, job_id=job_id, number=number,
                                    result=result if isinstance(result, dict) else {})
        except ForeignAttempt as exc:
            # refused, and acknowledged so that the node stops offering it
            await self._send({"type": "error", "job_id": job_id, "attempt": number, "error": str(exc)})
            await self._send({"type": "ack", "job_id": job_id, "attempt": number, "accepted": False})
            return
        self.attempts.pop((job_id, number), None)
        self.progress_written.pop((job_id, number), None)
        await self._send({"type": "ack", "job_id": job_id, "attempt": number, "accepted": True})

    # --- messages from the rest of the marketplace (live bus) -------------------------------

    async def _from_marketplace(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "node.frame":
            await self.node_frame(message)
        elif kind == "node.superseded":
            await self.close(code=4409)
        # a resync needs nothing here: a frame lost on the way is an assignment never
        # accepted, which the watchdog takes back

    async def node_frame(self, message):
        frame = message["frame"]
        if frame.get("type") == "job":
            self.attempts[(frame["job_id"], frame["attempt"])] = message.get("ref")
        await self._send(frame)
