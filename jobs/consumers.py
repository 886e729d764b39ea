"""Live job events: a WebSocket at /ws/jobs/{id}/ and server-sent events at /v1/jobs/{id}/events.

Both authenticate like the REST API (Bearer or the X-B3IQ pair; browsers, which
cannot set WebSocket headers, may pass ``?api_key=``), subscribe to the job's topic on
the live bus, send a snapshot, then every status change and output chunk as it
happens. Told that events may have been lost (``RESYNC``), they send a fresh snapshot.
"""
from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from rest_framework.exceptions import AuthenticationFailed

from jobs.exceptions import JobNotFound
from jobs.live import customer_topic, job_row_event, job_topic
from jobs.models import TERMINAL, Job
from jobs.selectors import job_status_for_customer
from jobs.services.lifecycle import job_status_event
from marketplace import live_bus
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
    """A browser's WebSocket carries the session cookie from any page: only our own pages may use it."""
    origin, host = headers.get("origin"), headers.get("host")
    return bool(origin and host) and origin.split("://", 1)[-1] == host


def _session_customer(scope, headers: _Headers):
    if scope.get("type") != "websocket" or not _same_origin(scope, headers):
        return None
    return session_principal(scope.get("user"))


@database_sync_to_async
def _job_snapshot(scope, job_id: str):
    """(snapshot event, error) for the caller of ``scope``; exactly one of them is None."""
    headers = _scope_headers(scope)
    try:
        principal = authenticate_headers(headers) or _session_customer(scope, headers)
    except AuthenticationFailed as exc:
        return None, (401, "unauthorized", str(exc.detail))
    if principal is None:
        return None, (401, "unauthorized", "send an API key: Authorization: Bearer <key>")
    try:
        job = job_status_for_customer(customer=principal.customer, job_id=job_id)
    except JobNotFound as exc:
        return None, (404, exc.code, exc.detail)
    return job_status_event(job), None


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
    async def connect(self):
        self.job_id = self.scope["url_route"]["kwargs"]["job_id"]
        if not await self._subscribe(job_topic(self.job_id), self._send_snapshot):
            return
        snapshot, error = await _job_snapshot(self.scope, self.job_id)
        if error:
            await self.subscription.close()
            await self.close(code=4000 + error[0])
            return
        await self.accept()
        await self.send_json(snapshot)
        await self._relay()

    async def _send_snapshot(self) -> None:
        snapshot, error = await _job_snapshot(self.scope, self.job_id)
        if snapshot is not None:
            await self.send_json(snapshot)


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

    It listens to the job's topic and to the client at once, so a client that
    goes away ends the stream at once; the stream also ends after the job's
    final status.
    """
    job_id = scope["url_route"]["kwargs"]["job_id"]
    if scope["method"] != "GET":
        await _problem(send, 405, "method_not_allowed", "use GET for the event stream")
        return
    # subscribe first, then read the snapshot: nothing between the two is lost
    try:
        subscription = await live_bus.subscribe(job_topic(job_id))
    except live_bus.LiveBusUnavailable:
        await _problem(send, 503, "live_events_unavailable", "live events are unavailable; poll GET /v1/jobs/{id}")
        return
    try:
        snapshot, error = await _job_snapshot(scope, job_id)
        if error:
            await _problem(send, *error)
            return
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": _sse(snapshot), "more_body": not _is_final(snapshot)})
        if _is_final(snapshot):
            return
        client_gone = asyncio.create_task(wait_for_disconnect(receive))
        try:
            while True:
                next_message = asyncio.create_task(subscription.get())
                done, _ = await asyncio.wait({next_message, client_gone}, timeout=KEEPALIVE_SECONDS,
                                             return_when=asyncio.FIRST_COMPLETED)
                if client_gone in done:
                    next_message.cancel()
                    return
                if not done:
                    next_message.cancel()
                    await send({"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})
                    continue
                event = next_message.result()
                if event.get("type") == live_bus.RESYNC["type"]:
                    event, error = await _job_snapshot(scope, job_id)
                    if error:
                        return
                final = _is_final(event)
                await send({"type": "http.response.body", "body": _sse(event), "more_body": not final})
                if final:
                    return
        finally:
            client_gone.cancel()
    finally:
        await subscription.close()


async def wait_for_disconnect(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
