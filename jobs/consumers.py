"""Live job events: a WebSocket at /ws/jobs/{id}/ and server-sent events at /v1/jobs/{id}/events.

Both authenticate like the REST API (Bearer or the X-B3IQ pair; browsers, which
cannot set WebSocket headers, may pass ``?api_key=``), join the job's group, send
a snapshot, then every status change and output chunk as it happens.
"""
from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.http import AsyncHttpConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from rest_framework.exceptions import AuthenticationFailed

from jobs.exceptions import JobNotFound
from jobs.live import job_group
from jobs.models import TERMINAL
from jobs.selectors import job_get_for_customer
from jobs.services.lifecycle import job_status_event
from marketplace.authentication import authenticate_headers

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


@database_sync_to_async
def _job_snapshot(scope, job_id: str):
    """(snapshot event, error) for the caller of ``scope``; exactly one of them is None."""
    try:
        principal = authenticate_headers(_scope_headers(scope))
    except AuthenticationFailed as exc:
        return None, (401, "unauthorized", str(exc.detail))
    if principal is None:
        return None, (401, "unauthorized", "send an API key: Authorization: Bearer <key>")
    try:
        job = job_get_for_customer(customer=principal.customer, job_id=job_id)
    except JobNotFound as exc:
        return None, (404, exc.code, exc.detail)
    return _status_with_result(job), None


def _status_with_result(job) -> dict:
    event = job_status_event(job)
    if job.status in TERMINAL:
        event.update(result=job.result, error=job.error or None)
    return event


def _is_final(event: dict) -> bool:
    return event.get("type") == "status" and event.get("status") in TERMINAL


class JobWebSocketConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        self.job_id = self.scope["url_route"]["kwargs"]["job_id"]
        self.group = job_group(self.job_id)
        # join first, then read the snapshot: nothing between the two is lost
        await self.channel_layer.group_add(self.group, self.channel_name)
        snapshot, error = await _job_snapshot(self.scope, self.job_id)
        if error:
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await self.close(code=4000 + error[0])
            return
        await self.accept()
        await self.send_json(snapshot)

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def job_event(self, message):
        await self.send_json(message["event"])


class JobEventsConsumer(AsyncHttpConsumer):
    """Server-sent events; the stream ends after the job's final status."""

    async def handle(self, body):
        self.job_id = self.scope["url_route"]["kwargs"]["job_id"]
        self.group = job_group(self.job_id)
        if self.scope["method"] != "GET":
            await self._problem(405, "method_not_allowed", "use GET for the event stream")
            return
        await self.channel_layer.group_add(self.group, self.channel_name)
        snapshot, error = await _job_snapshot(self.scope, self.job_id)
        if error:
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await self._problem(*error)
            return
        await self.send_headers(
            headers=[
                (b"Content-Type", b"text/event-stream"),
                (b"Cache-Control", b"no-cache"),
                (b"X-Accel-Buffering", b"no"),
            ]
        )
        self.keepalive = asyncio.create_task(self._keepalive())
        await self._send_event(snapshot)

    async def _problem(self, status: int, code: str, detail: str):
        from http import HTTPStatus

        body = {"error": {"status": status, "title": HTTPStatus(status).phrase, "detail": detail, "code": code}}
        await self.send_response(status, json.dumps(body).encode(), headers=[(b"Content-Type", b"application/json")])

    async def _send_event(self, event: dict):
        payload = f"event: {event.get('type', 'message')}\ndata: {json.dumps(event)}\n\n".encode()
        final = _is_final(event)
        await self.send_body(payload, more_body=not final)
        if final:
            await self._finish()

    async def _keepalive(self):
        while True:
            await asyncio.sleep(KEEPALIVE_SECONDS)
            await self.send_body(b": keep-alive\n\n", more_body=True)

    async def _finish(self):
        task = getattr(self, "keepalive", None)
        if task:
            task.cancel()
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def job_event(self, message):
        await self._send_event(message["event"])

    async def disconnect(self):
        await self._finish()
