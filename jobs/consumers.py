"""Live job events: a WebSocket at /ws/jobs/{id}/ and server-sent events at /v1/jobs/{id}/events.

Both authenticate like the REST API (Bearer or the X-B3IQ pair; browsers, which
cannot set WebSocket headers, may pass ``?api_key=``), subscribe to the job's topic on
the live bus, send a snapshot, then every status change and output chunk as it
happens. Told that events may have been lost (``RESYNC``), they send a fresh snapshot.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from rest_framework.exceptions import AuthenticationFailed

from jobs.exceptions import JobNotFound
from jobs.live import customer_topic, job_row_event, job_topic
from jobs.models import TERMINAL, Job
from jobs.selectors import job_status_for_customer
from jobs.services.lifecycle import job_status_event
from marketplace import key_streams, live_bus
from marketplace.authentication import authenticate_headers, session_principal
from marketplace.consumers import DirectDispatch

KEEPALIVE_SECONDS = 15


class _Headers(dict):
    def get(self, name, default=""):
        return super().get(name.lower(), default)


def _scope_headers(scope) -> _Headers:
    headers = _Headers((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope.get("headers", []))
    api_key = parse_qs(scope.get("query_string", b"").decode()).get("api_key")
    if api_key and "authorization" not in headers:
        headers["authorization"] = f"Bearer {api_key[0]}"
    return headers


def _same_origin(scope, headers: _Headers) -> bool:
    """A browser's WebSocket carries the session cookie from any page: only our own pages may
    use it. Scheme and host both: a plain-HTTP page on our host name is not our HTTPS site. The
    scheme is the connection's, or behind trusted proxies the one they forward."""
    origin, host = headers.get("origin"), headers.get("host")
    if not origin or not host:
        return False
    secure = scope.get("scheme") in ("wss", "https")
    forwarded = headers.get("x-forwarded-proto").split(",")[0].strip().lower()
    if settings.TRUSTED_PROXY_DEPTH and forwarded in ("http", "https"):
        secure = forwarded == "https"
    ours = f"{'https' if secure else 'http'}://{host}".lower()
    return origin.lower() == ours or origin in settings.CSRF_TRUSTED_ORIGINS


def _session_customer(scope, headers: _Headers):
    if scope.get("type") != "websocket" or not _same_origin(scope, headers):
        return None
    return session_principal(scope.get("user"))


@dataclass(frozen=True)
class _Snapshot:
    """The job as the caller of a scope sees it, or why not; and the API key they came with."""

    event: dict | None
    error: tuple[int, str, str] | None = None
    api_key_pk: int | None = None  # None: signed in with a session


@database_sync_to_async
def _job_snapshot(scope, job_id: str) -> _Snapshot:
    headers = _scope_headers(scope)
    try:
        principal = authenticate_headers(headers) or _session_customer(scope, headers)
    except AuthenticationFailed as exc:
        return _Snapshot(None, (401, "unauthorized", str(exc.detail)))
    if principal is None:
        return _Snapshot(None, (401, "unauthorized", "send an API key: Authorization: Bearer <key>"))
    try:
        job = job_status_for_customer(customer=principal.customer, job_id=job_id)
    except JobNotFound as exc:
        return _Snapshot(None, (404, exc.code, exc.detail))
    api_key = getattr(principal, "api_key", None)
    return _Snapshot(job_status_event(job), api_key_pk=api_key.pk if api_key is not None else None)


def _is_final(event: dict) -> bool:
    return event.get("type") == "status" and event.get("status") in TERMINAL


class _LiveConsumer(DirectDispatch, AsyncJsonWebsocketConsumer):
    """A WebSocket that relays one live-bus topic: subscribed before its snapshot is read.

    ``resync`` sends the snapshot again, for when the bus says messages may have been lost.
    """

    subscription = pump = resync = None

    async def _subscribe(self, topic: str, resync) -> bool:
        self.resync = resync
        try:
            self.subscription = await live_bus.subscribe(topic)
        except live_bus.LiveBusUnavailable:
            await self.close(code=1013)  # try again later
            return False
        return True

    async def _relay(self) -> None:
        self.pump = live_bus.pump(self.subscription, self._on_message)

    async def _on_message(self, message: dict) -> None:
        if message.get("type") == live_bus.RESYNC["type"]:
            await self.resync()
        else:
            await self.send_json(message)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        """What a client sends is never parsed: these sockets only relay, and a frame nobody
        reads cannot overflow a parser."""

    async def disconnect(self, code):
        if self.pump is not None:
            self.pump.cancel()
        if self.subscription is not None:
            await self.subscription.close()


class JobWebSocketConsumer(_LiveConsumer):
    key_stream = None  # (api key pk, the future done when that key is revoked)

    async def connect(self):
        self.job_id = self.scope["url_route"]["kwargs"]["job_id"]
        try:
            await key_streams.listening()  # before the key is checked: a revocation meanwhile counts
        except live_bus.LiveBusUnavailable:
            await self.close(code=1013)
            return
        if not await self._subscribe(job_topic(self.job_id), self._send_snapshot):
            return
        snapshot = await _job_snapshot(self.scope, self.job_id)
        if snapshot.error:
            await self.subscription.close()
            await self.close(code=4000 + snapshot.error[0])
            return
        if snapshot.api_key_pk is not None:
            try:
                ended = key_streams.stream_open(snapshot.api_key_pk)
            except key_streams.TooManyStreams:
                await self.subscription.close()
                await self.close(code=4429)
                return
            self.key_stream = (snapshot.api_key_pk, ended)
            ended.add_done_callback(self._key_revoked)
        await self.accept()
        await self.send_json(snapshot.event)
        await self._relay()

    def _key_revoked(self, ended: asyncio.Future) -> None:
        if not ended.cancelled():
            # held, so the task is not collected before it runs
            self.closing = asyncio.get_running_loop().create_task(self.close(code=4401))

    async def _send_snapshot(self) -> None:
        snapshot = await _job_snapshot(self.scope, self.job_id)
        if snapshot.event is not None:
            await self.send_json(snapshot.event)
        elif snapshot.error and snapshot.error[0] == 401:
            await self.close(code=4401)

    async def disconnect(self, code):
        if self.key_stream is not None:
            key_streams.stream_close(*self.key_stream)
            self.key_stream = None
        await super().disconnect(code)


@database_sync_to_async
def _dashboard_snapshot(scope):
    """The signed-in customer's pk and their newest jobs' rows, or None for anyone else."""
    principal = _session_customer(scope, _scope_headers(scope))
    if principal is None:
        return None
    jobs = Job.objects.filter(customer=principal.customer).order_by("-id")[:50]
    return principal.customer.pk, [job_row_event(job) for job in jobs]


class CustomerJobsConsumer(_LiveConsumer):
    """The dashboard's jobs table, live: every job of the signed-in customer as it changes."""

    async def connect(self):
        # who it is comes first (nobody else may subscribe); the rows after subscribing
        found = await _dashboard_snapshot(self.scope)
        if found is None:
            await self.close(code=4401)
            return
        if not await self._subscribe(customer_topic(found[0]), self._send_rows):
            return
        await self.accept()
        await self._send_rows()
        await self._relay()

    async def _send_rows(self) -> None:
        found = await _dashboard_snapshot(self.scope)
        for row in reversed(found[1] if found else []):  # oldest first, so the newest ends up on top
            await self.send_json(row)


async def _problem(send, status: int, code: str, detail: str) -> None:
    from http import HTTPStatus

    body = {"error": {"status": status, "title": HTTPStatus(status).phrase, "detail": detail, "code": code}}
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def _sse(event: dict) -> bytes:
    return f"event: {event.get('type', 'message')}\ndata: {json.dumps(event)}\n\n".encode()


async def job_event_stream(scope, receive, send):
    """Server-sent events for one job, as a plain ASGI app.

    It listens to the job's topic, to the client and to its key's revocation at once: a
    client that goes away ends the stream at once, and so does revoking the key; the
    stream also ends after the job's final status.
    """
    job_id = scope["url_route"]["kwargs"]["job_id"]
    if scope["method"] != "GET":
        await _problem(send, 405, "method_not_allowed", "use GET for the event stream")
        return
    # subscribe first, then read the snapshot: nothing between the two is lost
    try:
        await key_streams.listening()
        subscription = await live_bus.subscribe(job_topic(job_id))
    except live_bus.LiveBusUnavailable:
        await _problem(send, 503, "live_events_unavailable", "live events are unavailable; poll GET /v1/jobs/{id}")
        return
    key_stream = None
    try:
        snapshot = await _job_snapshot(scope, job_id)
        if snapshot.error:
            await _problem(send, *snapshot.error)
            return
        if snapshot.api_key_pk is not None:
            try:
                key_stream = (snapshot.api_key_pk, key_streams.stream_open(snapshot.api_key_pk))
            except key_streams.TooManyStreams as exc:
                await _problem(send, 429, "too_many_streams", str(exc))
                return
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": _sse(snapshot.event), "more_body": not _is_final(snapshot.event)})
        if _is_final(snapshot.event):
            return
        await _relay_events(scope, job_id, receive, send, subscription, key_stream[1] if key_stream else None)
    finally:
        if key_stream is not None:
            key_streams.stream_close(*key_stream)
        await subscription.close()


async def _relay_events(scope, job_id: str, receive, send, subscription, revoked: asyncio.Future | None) -> None:
    """The job's events until its final one, the client's going, or its key's revocation."""
    client_gone = asyncio.create_task(wait_for_disconnect(receive))
    stops = {client_gone, *([revoked] if revoked is not None else [])}
    try:
        while True:
            next_message = asyncio.create_task(subscription.get())
            done, _ = await asyncio.wait({next_message, *stops}, timeout=KEEPALIVE_SECONDS,
                                         return_when=asyncio.FIRST_COMPLETED)
            if client_gone in done:
                next_message.cancel()
                return
            if revoked is not None and revoked in done:
                next_message.cancel()
                await send({"type": "http.response.body", "more_body": False, "body": _sse(
                    {"type": "error", "code": "api_key_revoked", "detail": "the API key was revoked"})})
                return
            if not done:
                next_message.cancel()
                await send({"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})
                continue
            event = next_message.result()
            if event.get("type") == live_bus.RESYNC["type"]:
                snapshot = await _job_snapshot(scope, job_id)
                if snapshot.error:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
                event = snapshot.event
            final = _is_final(event)
            await send({"type": "http.response.body", "body": _sse(event), "more_body": not final})
            if final:
                return
    finally:
        client_gone.cancel()


async def wait_for_disconnect(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
