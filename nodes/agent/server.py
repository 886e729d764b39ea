"""The agent's HTTP surface: Infernet's node REST API v1.4, plus job cancel.

Every response is JSON, errors included, in Infernet's ``{"error", "params"}``
shape: the published client calls ``response.json()`` before it looks at the
status, so an HTML error page would break it.
"""
from __future__ import annotations

import asyncio
import codecs
import contextlib
import ipaddress
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from nodes.agent import AGENT_VERSION
from nodes.agent.builtin import READINESS
from nodes.agent.config import AgentConfig
from nodes.agent.errors import AgentError, BadRequest, Forbidden, NotFound
from nodes.agent.guards import RateLimiter, flag_value, is_delegated_subscription, parse_job_request
from nodes.agent.hardware import hardware_capabilities
from nodes.agent.identity import Identity, load_or_create_identity
from nodes.agent.jobs import FAILED, RUNNING, SUCCESS, Job, JobRunner, JobStore
from nodes.agent.runtimes.base import Runtime
from nodes.agent.runtimes.docker import DockerRuntime
from nodes.agent.runtimes.http import HttpServiceRuntime
from nodes.agent.runtimes.process import ProcessRuntime
from nodes.agent.transport_keys import TransportKeyring
from wire.bounded_json import JsonRejected, loads_bounded

log = logging.getLogger(__name__)

RUNTIME_CLASSES = {"process": ProcessRuntime, "docker": DockerRuntime, "http": HttpServiceRuntime}
SWEEP_SECONDS = 5.0


@dataclass
class AgentState:
    config: AgentConfig
    identity: Identity
    node_id: str
    store: JobStore
    runner: JobRunner
    runtimes: dict[str, Runtime]
    limiter: RateLimiter
    keyring: TransportKeyring
    background: set[asyncio.Task] = field(default_factory=set)
    # set when the transport keys changed: the heartbeat publishes them at once
    keys_changed: asyncio.Event = field(default_factory=asyncio.Event)

    def unavailable_models(self) -> dict[str, str]:
        """The models this node advertises and cannot run now, with why (a built-in container whose
        package is not installed): the marketplace stops offering them."""
        missing = {}
        for container in self.config.containers:
            check = READINESS.get(container.entrypoint)
            reason = check() if check else None
            if reason:
                missing.update({model: reason for model in container.models})
        return missing

    def enrolled(self, *, node_id: str) -> None:
        """The marketplace's node id, for receipts and private contexts."""
        self.node_id = node_id
        self.runner.node_id = node_id


STATE = web.AppKey("agent_state", AgentState)


def _json(body: Any, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode("utf-8"),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _client_ip(request: web.Request) -> str:
    """Who owns the jobs of this request: the caller's address, as on Infernet. (The marketplace's
    jobs come over the node socket, under a name no address can take.)"""
    return request.remote or "unknown"


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()  # over client_max_size raises 413, rendered as JSON below
    try:
        return loads_bounded(raw, max_bytes=len(raw), storable=False)
    except JsonRejected as exc:
        raise BadRequest("Could not parse request body as JSON", detail=str(exc)) from None


def _flag(request: web.Request, name: str) -> bool | None:
    return flag_value(name, request.query.get(name))


def _job_id(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise BadRequest("Invalid job id", id=raw) from None


@web.middleware
async def json_errors(request: web.Request, handler):
    try:
        return await handler(request)
    except AgentError as error:
        headers = None
        if error.status == 429:
            headers = {"Retry-After": str(max(1, int(error.params.get("retry_after", 1) + 0.999)))}
        return _json(error.as_body(), error.status, headers)
    except web.HTTPException as exc:
        if exc.status == 404:
            body = {"error": "Not found", "params": {"path": request.path}}
        elif exc.status == 405:
            body = {"error": "Method not allowed", "params": {"method": request.method}}
        elif exc.status == 413:
            body = {"error": "Request body too large", "params": {"limit": request.app[STATE].config.max_body_bytes}}
        else:
            body = {"error": exc.reason or "HTTP error"}
        return _json(body, exc.status, {k: v for k, v in exc.headers.items() if k == "Allow"})
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        return _json({"error": "Internal server error"}, 500)


@web.middleware
async def rate_limit(request: web.Request, handler):
    # health probes are never throttled
    if request.path != "/health":
        request.app[STATE].limiter.check(_client_ip(request))
    return await handler(request)


# --- node information -------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    return _json({"status": "healthy"})


def _container_info(state: AgentState) -> list[dict]:
    return [
        {"id": c.id, "external": c.external, "image": c.display_image, "description": c.description}
        for c in state.config.containers
    ]


async def info(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return _json(
        {
            "version": AGENT_VERSION,
            "containers": _container_info(state),
            "pending": {"offchain": state.store.pending, "onchain": 0},
            "chain": {"enabled": False, "address": state.config.chain_address},
            "node": {
                "id": state.node_id,
                "identity_public_key": state.identity.public_key_b64u,
                "transport_keys": state.keyring.published(),
            },
        }
    )


async def resources(request: web.Request) -> web.Response:
    state = request.app[STATE]
    model_id = request.query.get("model_id")
    if model_id is not None:
        if not model_id.strip():
            raise BadRequest("model_id must not be empty")
        return _json(
            {
                c.id: {"supported": True}
                if model_id in c.models
                else {"supported": False, "error": f"model {model_id} is not served by container {c.id}"}
                for c in state.config.containers
            }
        )
    hardware = await asyncio.to_thread(hardware_capabilities)
    return _json(
        {
            c.id: {
                "service_id": c.id,
                "compute_capability": [
                    {
                        "id": "ml",
                        "type": c.runtime,
                        "task": list(c.tasks),
                        "models": [{"owner": "", "name": m} for m in c.models],
                        "cached_models": [],
                        "inference_engine": c.runtime,
                        "inference_engine_version": AGENT_VERSION,
                    }
                ],
                "hardware_capabilities": hardware,
            }
            for c in state.config.containers
        }
    )


# --- jobs --------------------------------------------------------------------------


def _submit(state: AgentState, body: Any, client_ip: str, stream: bool = False) -> Job:
    job = parse_job_request(body, state.config, client_ip)
    return state.runner.submit(
        client_ip=client_ip,
        containers=job.containers,
        data=job.data,
        requires_proof=job.requires_proof,
        stream=stream,
    )


async def create_job(request: web.Request) -> web.Response:
    state = request.app[STATE]
    job = _submit(state, await _json_body(request), _client_ip(request))
    return _json({"id": job.id})


async def create_job_batch(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _json_body(request)
    if not isinstance(body, list):
        raise BadRequest("Expected a list")
    results = []
    for item in body:
        try:
            results.append({"id": _submit(state, item, _client_ip(request)).id})
        except AgentError as error:  # one bad item never fails the batch
            results.append(error.as_body())
    return _json(results)


async def create_job_stream(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    body = await _json_body(request)
    if is_delegated_subscription(body):
        raise BadRequest("Streaming only supported for JobRequest requests")
    job = _submit(state, body, _client_ip(request), stream=True)

    # "events": the job id line, then one JSON line per output chunk, then the final
    # JobResult (with its receipt), so the caller needs no second request for it
    events = request.headers.get("X-Stream-Format") == "events"
    response = web.StreamResponse(
        headers={"Content-Type": "application/x-ndjson" if events else "text/plain; charset=utf-8"}
    )
    response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(f"{job.id}\n".encode())
    id_sent = time.monotonic()
    # a caller of the events format splits the id off by its newline; only others need the gap
    gap = 0.0 if events else state.config.stream_first_chunk_gap_ms / 1000
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    first = True
    try:
        while (chunk := await job.stream.get()) is not None:
            if first:
                # The published client takes its first read as the job id; a chunk
                # that arrived with the id would be glued to it. A short gap keeps
                # them apart (only when the output came that fast).
                first = False
                wait = gap - (time.monotonic() - id_sent)
                if wait > 0:
                    await asyncio.sleep(wait)
            if events:
                text = decoder.decode(chunk)
                if text:
                    await response.write(json.dumps({"output": text}).encode() + b"\n")
            else:
                await response.write(chunk)
        if events:
            await response.write(json.dumps({"result": job.as_result(intermediate=True)}).encode() + b"\n")
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client left; the job runs on and its result stays fetchable
    finally:
        job.stream = None  # nobody reads the chunks any more: stop queueing them
    return response


async def transport_keys(request: web.Request) -> web.Response:
    """The signed public transport keys: anyone may read them, and check them with the identity key."""
    state = request.app[STATE]
    return _json({"node_id": state.node_id, "identity_public_key": state.identity.public_key_b64u,
                  "transport_keys": state.keyring.published()})


async def rotate_transport_key(request: web.Request) -> web.Response:
    """Start a new transport key now (the miner's own machine only); the old one enters its grace."""
    state = request.app[STATE]
    if not _is_loopback(request.remote or ""):
        raise Forbidden("Unauthorized")
    key_id = state.keyring.rotate()
    state.keys_changed.set()
    return _json({"key_id": key_id, "transport_keys": state.keyring.published()})


async def get_jobs(request: web.Request) -> web.Response:
    state = request.app[STATE]
    client_ip = _client_ip(request)
    ids = request.query.getall("id", [])
    if not ids:
        pending = _flag(request, "pending")
        return _json(state.store.ids_for(client_ip, pending))
    intermediate = bool(_flag(request, "intermediate"))
    results = []
    for raw in ids:
        job = state.store.get(_job_id(raw), client_ip)
        if job is not None:
            results.append(job.as_result(intermediate))
    return _json(results)


async def cancel_job(request: web.Request) -> web.Response:
    state = request.app[STATE]
    job = state.store.get(_job_id(request.match_info["job_id"]), _client_ip(request))
    if job is None:
        raise NotFound("Job not found", id=request.match_info["job_id"])
    if job.finished and job.reason != "cancelled":
        raise AgentError("Job already finished", http_status=409, id=job.id, job_status=job.status)
    if job.task is None:
        raise AgentError("Job is run by a container on its own; it cannot be cancelled here", http_status=409, id=job.id)
    await state.runner.cancel(job)
    return _json(job.as_result())


async def put_status(request: web.Request) -> web.Response:
    """Infernet's escape hatch for legacy containers that record their own jobs."""
    state = request.app[STATE]
    client_ip = _client_ip(request)
    if not _is_loopback(client_ip):
        raise Forbidden("Unauthorized")
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise BadRequest("Body must be a JSON object")
    status = body.get("status")
    if status not in (RUNNING, SUCCESS, FAILED):
        raise BadRequest("Status is invalid", status=status)
    containers = body.get("containers")
    if not isinstance(containers, list) or not containers or not all(isinstance(c, str) for c in containers):
        raise BadRequest("containers must be a non-empty list of container IDs")
    job_id = _job_id(str(body.get("id", "")))
    state.store.record_status(job_id=job_id, client_ip=client_ip, containers=containers, status=status)
    return _json({})


# --- the application ---------------------------------------------------------------


async def _sweep(state: AgentState) -> None:
    while True:
        await asyncio.sleep(SWEEP_SECONDS)
        state.store.evict()
        state.limiter.forget_idle()
        if state.keyring.tick():
            state.keys_changed.set()


async def _start(app: web.Application) -> None:
    state = app[STATE]
    started = []
    try:
        for runtime in state.runtimes.values():
            await runtime.start()
            started.append(runtime)
    except BaseException:
        for runtime in started:
            await runtime.stop()
        raise
    state.background.add(asyncio.create_task(_sweep(state)))
    # GPU probing may import torch (seconds): warm the cache without holding up start-up
    state.background.add(asyncio.create_task(asyncio.to_thread(hardware_capabilities)))


async def _stop(app: web.Application) -> None:
    state = app[STATE]
    for task in state.background:
        task.cancel()
    running = [job.task for job in state.store.running_jobs() if job.task]
    for task in running:
        task.cancel()
    if running:
        await asyncio.wait(running, timeout=5)
    for runtime in state.runtimes.values():
        with contextlib.suppress(Exception):
            await runtime.stop()


def build_state(config: AgentConfig, state_dir: Path, identity: Identity | None = None, node_id: str = "") -> AgentState:
    identity = identity or load_or_create_identity(state_dir)
    node_id = node_id or config.node_id or identity.default_node_id
    store = JobStore(config)
    runtimes = {c.id: RUNTIME_CLASSES[c.runtime](c) for c in config.containers}
    return AgentState(
        config=config,
        identity=identity,
        node_id=node_id,
        store=store,
        runner=JobRunner(config, runtimes, store, identity, node_id),
        runtimes=runtimes,
        limiter=RateLimiter(config.rate_limit),
        keyring=TransportKeyring(
            identity, rotation_seconds=config.transport_key_rotation_seconds,
            grace_seconds=config.transport_key_grace_seconds,
        ),
    )


def build_app(state: AgentState) -> web.Application:
    app = web.Application(
        middlewares=[json_errors, rate_limit], client_max_size=state.config.max_body_bytes
    )
    app[STATE] = state
    app.router.add_get("/health", health)
    app.router.add_get("/info", info)
    app.router.add_get("/resources", resources)
    app.router.add_post("/api/jobs", create_job)
    app.router.add_get("/api/jobs", get_jobs)
    app.router.add_post("/api/jobs/batch", create_job_batch)
    app.router.add_post("/api/jobs/stream", create_job_stream)
    app.router.add_delete("/api/jobs/{job_id}", cancel_job)
    app.router.add_put("/api/status", put_status)
    app.router.add_get("/transport-keys", transport_keys)
    app.router.add_post("/transport-keys/rotate", rotate_transport_key)
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
    return app
