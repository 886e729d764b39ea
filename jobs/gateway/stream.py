"""``POST /infernet/<key>/api/jobs/stream``: the job id, then its output as the node produces it.

A plain ASGI app, like the SSE route: it subscribes to the job's topic before the
job exists (the id is made here), so no output can slip out before it listens.
"""
from __future__ import annotations

import asyncio
import json
import logging

from channels.db import database_sync_to_async
from django.conf import settings

from jobs.consumers import wait_for_disconnect
from jobs.gateway.access import gateway_principal
from jobs.gateway.errors import InfernetError
from jobs.gateway.submit import parse_body, parse_job_request, submit
from jobs.live import job_topic
from jobs.models import TERMINAL, Job
from marketplace import live_bus
from marketplace.ids import public_id

log = logging.getLogger(__name__)

# the published client takes its first read as the job id: keep the first output apart from it
FIRST_CHUNK_GAP_SECONDS = 0.002


async def _respond_json(send, status: int, body) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


async def _read_body(receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError
        body += message.get("body", b"")
        if len(body) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            raise InfernetError("Request body too large", status=413, limit=settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        if not message.get("more_body"):
            return body


@database_sync_to_async
def _submit(api_key: str, raw: bytes, job_id: str) -> None:
    principal = gateway_principal(api_key)
    body = parse_body(raw)
    if isinstance(body, dict) and "subscription" in body:
        raise InfernetError("Streaming only supported for JobRequest requests")
    submit(principal, parse_job_request(body), job_id=job_id)


@database_sync_to_async
def _final_output(job_id: str):
    job = Job.objects.filter(public_id=job_id).first()
    return (job.status, job.result) if job else (None, None)


async def infernet_stream(scope, receive, send):
    api_key = scope["url_route"]["kwargs"]["api_key"]
    if scope["method"] != "POST":
        await _respond_json(send, 405, {"error": "Method not allowed", "params": {"method": scope["method"]}})
        return
    job_id = public_id("job", 12)
    try:
        subscription = await live_bus.subscribe(job_topic(job_id))
    except live_bus.LiveBusUnavailable:
        await _respond_json(send, 503, {"error": "Live output is unavailable; try again shortly"})
        return
    try:
        try:
            await _submit(api_key, await _read_body(receive), job_id)
        except InfernetError as error:
            await _respond_json(send, error.status, error.as_body())
            return
        except ConnectionResetError:
            raise
        except Exception:  # JSON, never an HTML page, for a client that reads JSON first
            log.exception("unhandled error on POST %s", scope["path"])
            await _respond_json(send, 500, {"error": "Internal server error"})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
        await send({"type": "http.response.body", "body": f"{job_id}\n".encode(), "more_body": True})
        await asyncio.sleep(FIRST_CHUNK_GAP_SECONDS)
        streamed = False
        client_gone = asyncio.create_task(wait_for_disconnect(receive))
        while True:
            next_message = asyncio.create_task(subscription.get())
            done, _ = await asyncio.wait({next_message, client_gone}, return_when=asyncio.FIRST_COMPLETED)
            if client_gone in done:
                next_message.cancel()
                return  # the client left; the job runs on and its result stays fetchable
            event = next_message.result()
            if event.get("type") == live_bus.RESYNC["type"]:
                # events may have been lost: the stored record says whether it ended
                status, _ = await _final_output(job_id)
                event = {"type": "status", "status": status} if status in TERMINAL else {}
            if event.get("type") == "output":
                streamed = True
                await send({"type": "http.response.body", "body": str(event["data"]).encode(), "more_body": True})
            elif event.get("type") == "status" and event.get("status") in TERMINAL:
                if not streamed:
                    status, result = await _final_output(job_id)
                    if status == "completed" and result is not None:
                        await send({"type": "http.response.body", "body": json.dumps(result).encode(),
                                    "more_body": True})
                break
        client_gone.cancel()
        await send({"type": "http.response.body", "body": b""})
    except ConnectionResetError:
        pass  # the client left while the body was read or sent: the job (if made) runs on
    finally:
        await subscription.close()
