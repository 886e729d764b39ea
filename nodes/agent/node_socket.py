"""The agent's end of the node socket: one WebSocket it dials to the marketplace and keeps open.

The node needs no inbound port for the marketplace. Jobs come down the socket;
acceptance, output, progress and results go up. A finished result stays in the
outbox until the marketplace acknowledges it and is offered again after every
reconnect, so a result produced while the socket was down lands once.
Reconnects back off exponentially with jitter, so a marketplace restart is not
met by every node at the same instant.
"""
from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import random
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

import aiohttp

from nodes.agent.errors import AgentError
from nodes.agent.guards import parse_job_request
from nodes.agent.hardware import gpu_telemetry
from nodes.agent.private import private_job_open
from wire.frames import MARKET_TYPES, MAX_FRAME_BYTES, SOCKET_PATH, FrameError, attempt_key, decode_frame, encode_frame

if TYPE_CHECKING:
    from nodes.agent.jobs import Job
    from nodes.agent.marketplace_link import Enrollment
    from nodes.agent.server import AgentState

log = logging.getLogger(__name__)

MARKETPLACE_CLIENT = "marketplace"
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
# results kept for a marketplace that has not acknowledged them (oldest dropped past this)
MAX_OUTBOX = 10_000
RESEND_AFTER_SECONDS = 10.0
PROGRESS_EVERY_SECONDS = 0.2
# room in a result frame for what wraps the result: the frame's fields, the receipt, the job's status
RESULT_FRAME_MARGIN = 64 * 1024
MAX_QUEUED_FRAMES = 10_000

Key = tuple[str, int]


def _socket_url(marketplace: str) -> str:
    base = marketplace.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base[len("https://"):] + SOCKET_PATH
    return "ws://" + base.removeprefix("http://") + SOCKET_PATH


class _Watcher:
    """Relays one marketplace job's output and progress, and files its result in the outbox."""

    max_result_bytes = MAX_FRAME_BYTES - RESULT_FRAME_MARGIN

    def __init__(self, link: "NodeSocket", key: Key) -> None:
        self._link, self._key = link, key
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._progress_sent = 0.0

    def chunk(self, job: "Job", data: bytes) -> None:
        text = self._decoder.decode(data)
        if text:
            self._link.send({"type": "output", "job_id": self._key[0], "attempt": self._key[1], "data": text})

    def progress(self, job: "Job") -> None:
        now = time.monotonic()
        if now - self._progress_sent >= PROGRESS_EVERY_SECONDS:
            self._progress_sent = now
            self._link.send({"type": "progress", "job_id": self._key[0], "attempt": self._key[1],
                                  "progress": round(job.progress, 4)})

    def finished(self, job: "Job") -> None:
        self._link.finished(self._key, job)


class NodeSocket:
    def __init__(self, state: "AgentState", enrollment: "Enrollment") -> None:
        self._state = state
        self._enrollment = enrollment
        self._url = _socket_url(enrollment.marketplace)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self.running: dict[Key, "Job"] = {}
        self.outbox: OrderedDict[Key, tuple[float, dict]] = OrderedDict()
        self._interval = enrollment.heartbeat_interval_seconds
        # one writer per connection sends frames in the order they were made: a job's last
        # output chunk never arrives after its result
        self._outgoing: asyncio.Queue[dict] = asyncio.Queue(maxsize=MAX_QUEUED_FRAMES)

    # --- the connection --------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, serve, reconnect; until cancelled."""
        backoff = FIRST_BACKOFF
        timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_connect=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                try:
                    await self._session(session)
                    backoff = FIRST_BACKOFF  # it was up: the next try comes soon
                except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                    log.warning("marketplace socket: %s", exc or type(exc).__name__)
                await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
                backoff = min(backoff * 2, MAX_BACKOFF)

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._enrollment.node_token}",
            "X-Node-Id": self._enrollment.node_id,
            **self._state.identity.sign_request("GET", SOCKET_PATH, b""),
        }

    async def _session(self, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(self._url, headers=self._headers(), max_msg_size=MAX_FRAME_BYTES,
                                      heartbeat=max(self._interval * 3, 10)) as ws:
            self._outgoing = asyncio.Queue(maxsize=MAX_QUEUED_FRAMES)
            self._ws = ws
            self.send(self._hello())
            writer = asyncio.create_task(self._write(ws))
            beats = asyncio.create_task(self._heartbeats())
            log.info("connected to the marketplace socket")
            try:
                async for message in ws:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        await self._receive(message.data)
                    elif message.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                        break
            finally:
                beats.cancel()
                writer.cancel()
                self._ws = None
        log.warning("marketplace socket closed (code %s)", ws.close_code)

    async def _write(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            frame = await self._outgoing.get()
            try:
                await ws.send_str(encode_frame(frame))
            except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
                log.info("could not send a %s frame: %s", frame.get("type"), exc)
                return

    def send(self, frame: dict) -> None:
        """Queue a frame for this connection; while down, nothing is queued: output and progress
        are live only, and results wait in the outbox for the next hello."""
        if self._ws is None:
            return
        try:
            self._outgoing.put_nowait(frame)
        except asyncio.QueueFull:
            log.warning("dropped a %s frame: the marketplace is not reading", frame.get("type"))

    def _keys(self, keys) -> list[dict]:
        return [{"job_id": job_id, "attempt": number} for job_id, number in keys]

    def _hello(self) -> dict:
        return {
            "type": "hello",
            "capacity": self._state.config.capacity,
            "transport_keys": self._state.keyring.published(),
            "unavailable": self._state.unavailable_models(),
            "running": self._keys(self.running),
            "results": [{"job_id": k[0], "attempt": k[1], "result": r} for k, (_, r) in self.outbox.items()],
        }

    async def _heartbeats(self) -> None:
        keys_changed = self._state.keys_changed
        while True:
            with contextlib.suppress(asyncio.TimeoutError):  # a beat is due, or the keys changed
                await asyncio.wait_for(keys_changed.wait(), self._interval)
            frame = {"type": "heartbeat", "running": self._keys(self.running),
                     "free": max(0, self._state.config.capacity - len(self.running))}
            gpus = await asyncio.get_running_loop().run_in_executor(None, gpu_telemetry)
            if gpus:
                frame["gpus"] = gpus
            if keys_changed.is_set():
                keys_changed.clear()
                frame["transport_keys"] = self._state.keyring.published()
            self.send(frame)
            # results the marketplace has not acknowledged in a while are offered again
            horizon = time.monotonic() - RESEND_AFTER_SECONDS
            for key, (sent, result) in list(self.outbox.items()):
                if sent < horizon:
                    self.outbox[key] = (time.monotonic(), result)
                    self.send({"type": "result", "job_id": key[0], "attempt": key[1], "result": result})

    # --- frames from the marketplace ---------------------------------------------------------

    async def _receive(self, text: str) -> None:
        try:
            frame = decode_frame(text, MARKET_TYPES)
            if frame["type"] == "job":
                await self._job(frame)
            elif frame["type"] == "cancel":
                job = self.running.get(attempt_key(frame))
                if job is not None:
                    log.info("job %s (%s) cancelled at the marketplace's request", job.id, frame["job_id"])
                    await self._state.runner.cancel(job)
            elif frame["type"] == "ack":
                self.outbox.pop(attempt_key(frame), None)
            elif frame["type"] == "welcome":
                interval = frame.get("heartbeat_interval_seconds")
                if isinstance(interval, (int, float)) and 0.1 <= interval <= 300:
                    self._interval = float(interval)
            elif frame["type"] == "error":
                log.warning("the marketplace says: %s", frame.get("error"))
        except FrameError as exc:
            log.warning("a frame from the marketplace was refused: %s", exc)

    async def _job(self, frame: dict) -> None:
        key = attempt_key(frame)
        if key in self.running:
            self.send({"type": "accepted", "job_id": key[0], "attempt": key[1],
                              "node_job_id": self.running[key].id})
            return
        if key in self.outbox:
            self.send({"type": "result", "job_id": key[0], "attempt": key[1], "result": self.outbox[key][1]})
            return
        state = self._state
        try:
            if "private" in frame:
                state.store.reserve_slot()  # before opening: a request refused for capacity is not spent
                opened = private_job_open(frame["private"], config=state.config, keyring=state.keyring,
                                          node_id=state.node_id)
                job = state.runner.submit(client_ip=MARKETPLACE_CLIENT, containers=[opened.container_id],
                                          data=opened.data, requires_proof=False, stream=False,
                                          private=opened.seal, watcher=_Watcher(self, key))
            else:
                request = parse_job_request({"containers": frame.get("containers"), "data": frame.get("data")},
                                            state.config, MARKETPLACE_CLIENT, trusted=True)
                job = state.runner.submit(client_ip=MARKETPLACE_CLIENT, containers=request.containers,
                                          data=request.data, requires_proof=request.requires_proof, stream=False,
                                          watcher=_Watcher(self, key))
        except AgentError as error:
            code = str(error.params.get("code", "")) or ("at_capacity" if error.status == 503 else "")
            self.send({"type": "refused", "job_id": key[0], "attempt": key[1], "code": code,
                              "error": error.error})
            return
        self.running[key] = job
        log.debug("job %s (%s attempt %d) started for the marketplace", job.id, key[0], key[1])
        self.send({"type": "accepted", "job_id": key[0], "attempt": key[1], "node_job_id": job.id})

    def finished(self, key: Key, job: "Job") -> None:
        self.running.pop(key, None)
        result = job.as_result(intermediate=True)
        self.outbox[key] = (time.monotonic(), result)
        while len(self.outbox) > MAX_OUTBOX:
            dropped, _ = self.outbox.popitem(last=False)
            log.warning("dropped the unacknowledged result of %s: the outbox is full", dropped)
        self.send({"type": "result", "job_id": key[0], "attempt": key[1], "result": result})
