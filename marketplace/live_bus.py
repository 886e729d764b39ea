"""Live messages between processes: any process publishes to a topic, a web server's loop subscribes.

What travels here is live and lossy by design: a job's status changes and output to the
WebSocket and SSE clients watching it, a customer's job rows to the dashboard, frames to
the socket of a node. Everything that matters is in the database first; a subscriber that
may have missed messages is told so (``RESYNC``) and reads the database again.

On services it is Redis pub/sub: a publish is one pipelined ``PUBLISH`` (a topic nobody
subscribes to costs Redis nothing more), and each event loop that has subscribers holds one
connection for all of them, so an open stream costs no Redis connection and no polling. It
replaced the Channels Redis layer, which spent about ninety Redis commands on each job (a
group send is three, a receive four) and a pooled connection per waiting stream.

Embedded (no ``REDIS_URL``) the same calls stay inside the process, handed to the
subscriber's own loop.
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import queue
import threading
import time
import weakref
from urllib.parse import unquote, urlsplit

from django.conf import settings

log = logging.getLogger(__name__)

# what a subscriber receives when messages for it may have been lost (a dropped connection, a
# subscriber too far behind): read the state again from the database
RESYNC = {"type": "bus.resync"}
# a subscriber this far behind is not caught up message by message: it resyncs
MAX_PENDING = 10_000
SUBSCRIBE_TIMEOUT_SECONDS = 2.0
PUBLISH_BATCH = 500
WARN_EVERY_SECONDS = 60.0


class LiveBusUnavailable(Exception):
    """The subscription could not be made (Redis unreachable): live messages would not arrive."""


class Subscription:
    """One subscriber's messages on one topic, in the order they were published."""

    def __init__(self, bus: "_LocalBus | _RedisBus", topic: str) -> None:
        self.topic = topic
        self.loop = asyncio.get_running_loop()
        self._bus = bus
        self._queue: collections.deque = collections.deque()
        self._waiter: asyncio.Future | None = None
        self.closed = False

    def deliver(self, message: dict) -> None:
        """Called on the subscriber's loop."""
        if self.closed:
            return
        if len(self._queue) >= MAX_PENDING:
            self._queue.clear()
            message = RESYNC
        self._queue.append(message)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> dict:
        while not self._queue:
            self._waiter = self.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._queue.popleft()

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self._bus.unsubscribe(self)


# --- embedded: inside the process ------------------------------------------------------------


class _LocalBus:
    def __init__(self) -> None:
        self._topics: dict[str, set[Subscription]] = {}
        self._lock = threading.Lock()

    def publish(self, topic: str, message: dict) -> None:
        subscribers = self._topics.get(topic)
        if not subscribers:
            return
        with self._lock:
            subscribers = list(subscribers)
        for subscription in subscribers:
            try:
                subscription.loop.call_soon_threadsafe(subscription.deliver, message)
            except RuntimeError:
                pass  # its loop closed: the subscriber is gone

    async def subscribe(self, topic: str) -> Subscription:
        subscription = Subscription(self, topic)
        with self._lock:
            self._topics.setdefault(topic, set()).add(subscription)
        return subscription

    async def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            subscribers = self._topics.get(subscription.topic)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._topics[subscription.topic]


# --- services: Redis pub/sub -----------------------------------------------------------------


def _command(*parts: bytes | str) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


async def _read_reply(reader: asyncio.StreamReader):
    """One RESP2 reply: what a subscribed connection hears (arrays of bulk strings and integers)."""
    line = await reader.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("the connection to Redis closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"*":
        return [await _read_reply(reader) for _ in range(int(rest))]
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else (await reader.readexactly(size + 2))[:-2]
    if kind == b":":
        return int(rest)
    if kind == b"+":
        return rest
    if kind == b"-":
        raise ConnectionError(f"Redis refused: {rest.decode(errors='replace')}")
    raise ConnectionError(f"unexpected reply from Redis: {line[:40]!r}")


class _LoopHub:
    """One event loop's connection to Redis, shared by all of that loop's subscribers."""

    def __init__(self, bus: "_RedisBus") -> None:
        self.bus = bus
        self.topics: dict[str, set[Subscription]] = {}
        # per Redis channel, the subscribe calls waiting for Redis to confirm, oldest first
        self.confirmations: dict[bytes, collections.deque] = {}
        self.writer: asyncio.StreamWriter | None = None
        self.task = asyncio.get_running_loop().create_task(self._run())

    def _channel(self, topic: str) -> bytes:
        return (self.bus.prefix + topic).encode()

    async def subscribe(self, subscription: Subscription) -> None:
        topic = subscription.topic
        first = topic not in self.topics
        self.topics.setdefault(topic, set()).add(subscription)
        channel = self._channel(topic)
        waiting = self.confirmations.setdefault(channel, collections.deque())
        if first:
            waiting.append(asyncio.get_running_loop().create_future())
            if self.writer is not None:  # else the connection, when made, subscribes every topic
                self.writer.write(_command("SUBSCRIBE", channel))
        if not waiting:
            return  # confirmed long ago
        try:
            await asyncio.wait_for(asyncio.shield(waiting[-1]), SUBSCRIBE_TIMEOUT_SECONDS)
        except asyncio.TimeoutError:
            await self.unsubscribe(subscription)
            raise LiveBusUnavailable("Redis did not confirm the subscription") from None

    async def unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self.topics.get(subscription.topic)
        if subscribers is None:
            return
        subscribers.discard(subscription)
        if not subscribers:
            del self.topics[subscription.topic]
            if self.writer is not None:
                self.writer.write(_command("UNSUBSCRIBE", self._channel(subscription.topic)))

    def _dispatch(self, reply) -> None:
        if not isinstance(reply, list) or len(reply) != 3:
            return
        kind, channel, payload = reply
        if kind == b"message":
            subscribers = self.topics.get(channel[len(self.bus.prefix):].decode())
            if subscribers:
                message = json.loads(payload)
                for subscription in list(subscribers):
                    subscription.deliver(message)
        elif kind == b"subscribe":
            # one confirmation per SUBSCRIBE written on this connection, in the order written
            waiting = self.confirmations.get(channel)
            if waiting:
                future = waiting.popleft()
                if not future.done():
                    future.set_result(None)

    def _confirm_on_this_connection(self) -> None:
        """A new connection subscribes every topic at once: its one confirmation per topic answers
        every subscribe call still waiting on that topic. Calls that waited on a topic no longer
        subscribed have all given up; theirs are dropped."""
        loop = asyncio.get_running_loop()
        waiting, self.confirmations = self.confirmations, {}
        for topic in self.topics:
            channel = self._channel(topic)
            earlier = [future for future in waiting.get(channel, ()) if not future.done()]
            confirmed = loop.create_future()
            for future in earlier:
                confirmed.add_done_callback(lambda _, future=future: future.done() or future.set_result(None))
            self.confirmations[channel] = collections.deque([confirmed])

    async def _connect(self):
        parts = urlsplit(self.bus.url)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname or "127.0.0.1", parts.port or 6379), SUBSCRIBE_TIMEOUT_SECONDS)
        if parts.password:
            auth = [unquote(parts.username), unquote(parts.password)] if parts.username else [unquote(parts.password)]
            writer.write(_command("AUTH", *auth))
            await asyncio.wait_for(_read_reply(reader), SUBSCRIBE_TIMEOUT_SECONDS)
        # named, so that an operator (or a test) can tell these connections apart in CLIENT LIST
        writer.write(_command("CLIENT", "SETNAME", self.bus.client_name))
        await asyncio.wait_for(_read_reply(reader), SUBSCRIBE_TIMEOUT_SECONDS)
        return reader, writer

    async def _run(self) -> None:
        backoff, was_down = 0.1, False
        while True:
            try:
                reader, writer = await self._connect()
                self.writer = writer
                self._confirm_on_this_connection()
                if self.topics:
                    writer.write(_command("SUBSCRIBE", *(self._channel(topic) for topic in self.topics)))
                if was_down:
                    # what was published while the connection was down is gone: subscribers reread
                    for subscribers in list(self.topics.values()):
                        for subscription in list(subscribers):
                            subscription.deliver(RESYNC)
                backoff, was_down = 0.1, False
                while True:
                    self._dispatch(await _read_reply(reader))
            except asyncio.CancelledError:
                raise
            except (OSError, ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as exc:
                self.writer, was_down = None, True
                self.bus.warn(exc, "live events wait for it to come back")
                if not self.topics:
                    return  # nobody waits: the next subscribe starts a new hub, and connects
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)


class _RedisBus:
    def __init__(self, url: str, prefix: str) -> None:
        self.url, self.prefix = url, prefix
        self.client_name = "live-bus-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in prefix)
        self._hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopHub] = weakref.WeakKeyDictionary()
        self._queue: queue.SimpleQueue | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._warned_at = 0.0

    def warn(self, exc: BaseException, doing: str) -> None:
        now = time.monotonic()
        if not self._warned_at or now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning("the live bus cannot reach Redis (%s: %s); %s", type(exc).__name__, exc, doing)

    # publishing: one thread per process, which pipelines whatever has queued up meanwhile

    def publish(self, topic: str, message: dict) -> None:
        if self._pid != os.getpid():  # first use, or a forked worker: the thread did not come along
            with self._lock:
                if self._pid != os.getpid():
                    self._queue = queue.SimpleQueue()
                    threading.Thread(target=self._publish_forever, args=(self._queue,), name="live-bus",
                                     daemon=True).start()
                    self._pid = os.getpid()
        self._queue.put((topic, message))

    def _publish_forever(self, pending: queue.SimpleQueue) -> None:
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=1.0, socket_connect_timeout=0.5)
        while True:
            batch = [pending.get()]
            while len(batch) < PUBLISH_BATCH:
                try:
                    batch.append(pending.get_nowait())
                except queue.Empty:
                    break
            try:
                pipe = client.pipeline(transaction=False)
                for topic, message in batch:
                    pipe.publish(self.prefix + topic, json.dumps(message, separators=(",", ":")))
                pipe.execute()
            except Exception as exc:  # lossy by design: the database holds what matters
                self.warn(exc, f"{len(batch)} live messages dropped")

    async def subscribe(self, topic: str) -> Subscription:
        loop = asyncio.get_running_loop()
        hub = self._hubs.get(loop)
        if hub is None or hub.task.done():
            hub = self._hubs[loop] = _LoopHub(self)
        subscription = Subscription(self, topic)
        await hub.subscribe(subscription)
        return subscription

    async def unsubscribe(self, subscription: Subscription) -> None:
        hub = self._hubs.get(subscription.loop)
        if hub is not None:
            await hub.unsubscribe(subscription)


_bus: _LocalBus | _RedisBus | None = None
_bus_lock = threading.Lock()


def _the_bus() -> _LocalBus | _RedisBus:
    global _bus
    if _bus is None:
        with _bus_lock:
            if _bus is None:
                url = settings.REDIS_URL
                _bus = _RedisBus(url, settings.LIVE_BUS_PREFIX + ":") if url else _LocalBus()
    return _bus


def publish(topic: str, message: dict) -> None:
    """Hand ``message`` (JSON-able) to every subscriber of ``topic``, in any process; never blocks."""
    _the_bus().publish(topic, message)


async def subscribe(topic: str) -> Subscription:
    """Subscribe this loop to ``topic``; once it returns, nothing published to it is missed.

    Raises ``LiveBusUnavailable`` when Redis cannot confirm the subscription in time.
    """
    return await _the_bus().subscribe(topic)


def pump(subscription: Subscription, handle) -> asyncio.Task:
    """A task that hands each message to ``await handle(message)``, in order, until cancelled."""

    async def run():
        while True:
            await handle(await subscription.get())

    return asyncio.get_running_loop().create_task(run())
