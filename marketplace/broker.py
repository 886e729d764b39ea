"""One RabbitMQ connection per process for everything the process sends.

Dramatiq's ``RabbitmqBroker`` keeps a pika connection per thread, because pika's
``BlockingConnection`` must not be used from two threads. Daphne and gunicorn's thread
workers run requests on threads that come and go, and each one left its connection open
behind it: 150 submits, 150 connections and 600 file handles, never freed (issue 12).

Here every call that touches the connection runs on one sender thread that owns the
process's only publishing connection; the caller waits for its own call, so a broker
error still reaches the code that sent. While idle the sender services the connection's
heartbeats, so RabbitMQ does not drop it for silence; a connection that breaks anyway is
dropped by Dramatiq's own retry in ``enqueue`` and the next attempt opens a fresh one.

Nothing here imports Django: django_dramatiq builds the broker while the apps load.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import weakref
from concurrent.futures import Future
from typing import Any, Callable, TypeVar

import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.errors import ConnectionFailed

log = logging.getLogger(__name__)

T = TypeVar("T")

_STOP = object()


class SenderThread:
    """Runs calls one at a time on a single daemon thread and hands each caller its result.

    ``idle`` runs on the thread whenever no call came for ``idle_seconds``. After a fork the
    child starts its own thread on first use (the parent's does not exist there).
    """

    def __init__(self, name: str, *, idle: Callable[[], None], idle_seconds: float, call_timeout: float) -> None:
        self._name = name
        self._idle = idle
        self._idle_seconds = idle_seconds
        self._call_timeout = call_timeout
        self._start_lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if threading.current_thread() is self._thread:
            return fn(*args, **kwargs)  # a call made from a call (enqueue declares its queue)
        self._ensure_running()
        future: Future = Future()
        self._calls.put((future, fn, args, kwargs))
        try:
            return future.result(timeout=self._call_timeout)
        except TimeoutError:
            # the call may still run later: Dramatiq's delivery is at-least-once anyway
            raise ConnectionFailed(f"the broker did not answer within {self._call_timeout:g}s") from None

    def stop(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._calls.put(_STOP)
            if threading.current_thread() is not self._thread:
                self._thread.join(timeout=5)

    def forget_after_fork(self) -> None:
        self._start_lock = threading.Lock()
        self._reset()

    def _ensure_running(self) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive() and self._pid == os.getpid():
            return
        with self._start_lock:
            if self._pid != os.getpid():
                self._reset()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                item = self._calls.get(timeout=self._idle_seconds)
            except queue.Empty:
                try:
                    self._idle()
                except Exception:  # the idle chore must never end the thread that every send needs
                    log.warning("broker sender: idle upkeep failed", exc_info=True)
                continue
            if item is _STOP:
                return
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # handed to the caller, who decides
                future.set_exception(exc)


class SharedConnectionRabbitmqBroker(RabbitmqBroker):
    """A ``RabbitmqBroker`` whose publishing goes through one connection per process.

    Consumers (in ``rundramatiq`` workers) keep their own connections, as Dramatiq makes
    them; only the per-thread publishing connections are replaced by the shared one.

    ``heartbeat_poll_seconds``: how often an idle sender lets pika answer heartbeats; keep
    it well under half the negotiated heartbeat (RabbitMQ's default is 60 s).
    ``send_timeout_seconds``: how long a caller waits for its publish before it gets
    ``ConnectionFailed``.
    """

    def __init__(self, *, heartbeat_poll_seconds: float = 5.0, send_timeout_seconds: float = 30.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.sender = SenderThread(
            "dramatiq-rabbitmq-sender",
            idle=self._keep_alive,
            idle_seconds=heartbeat_poll_seconds,
            call_timeout=send_timeout_seconds,
        )
        forget = weakref.WeakMethod(self._forget_parent_connections)
        os.register_at_fork(after_in_child=lambda: (method := forget()) and method())

    def enqueue(self, message, *, delay=None):
        return self.sender.call(super().enqueue, message, delay=delay)

    def declare_queue(self, queue_name: str, *, ensure: bool = False) -> None:
        if ensure:
            return self.sender.call(super().declare_queue, queue_name, ensure=True)
        return super().declare_queue(queue_name)  # bookkeeping only: no connection needed

    def get_queue_message_counts(self, queue_name: str) -> tuple[int, int, int]:
        return self.sender.call(super().get_queue_message_counts, queue_name)

    def flush(self, queue_name: str) -> None:
        return self.sender.call(super().flush, queue_name)

    def flush_all(self) -> None:
        return self.sender.call(super().flush_all)

    def run_on_connection(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(channel)`` on the sender thread with the process's shared channel."""
        return self.sender.call(lambda: fn(self.channel))

    def close(self) -> None:
        self.sender.call(super().close)  # on the thread that owns the connection
        self.sender.stop()
        self.connections.clear()
        self.channels.clear()

    def _keep_alive(self) -> None:
        connection = getattr(self.state, "connection", None)
        if connection is None:
            return
        try:
            # answers heartbeats and notices a connection the server closed
            connection.process_data_events(time_limit=0)
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError):
            log.warning("broker sender: the RabbitMQ connection was lost; the next send reconnects")
            del self.connection

    def _forget_parent_connections(self) -> None:
        # the parent's sockets are shared with the child after fork: never close or use them here
        self.connections = set()
        self.channels = set()
        self.sender.forget_after_fork()
