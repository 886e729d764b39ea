"""Jobs on the node: the bounded in-memory store and the runner of container chains.

Memory cannot grow without end: at most ``max_pending_jobs`` run at once, and a
finished job is kept for ``result_ttl_seconds`` or until ``max_finished_jobs``
newer ones have finished, whichever comes first.
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from nodes.agent.config import AgentConfig
from nodes.agent.errors import AgentError, AtCapacity, ContainerFailure
from nodes.agent.identity import Identity
from nodes.agent.private import PrivateSeal
from nodes.agent.runtimes.base import Chunk, ContainerCall, Event, Progress, Runtime
from wire.encoding import json_bytes, sha256_hex

log = logging.getLogger(__name__)

RUNNING, SUCCESS, FAILED = "running", "success", "failed"
CANCELLED_REASON = "cancelled"
_STREAM_END = None


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JobWatcher(Protocol):
    """Who hears of a job as it runs, instead of a stream reader: the marketplace socket."""

    # the most a result may weigh, as JSON, to reach it: a heavier one fails the job instead
    max_result_bytes: int

    def chunk(self, job: "Job", data: bytes) -> None: ...

    def progress(self, job: "Job") -> None: ...

    def finished(self, job: "Job") -> None: ...


@dataclass(eq=False)
class Job:
    id: str
    client_ip: str
    containers: list[str]
    data: Any
    requires_proof: bool = False
    status: str = RUNNING
    result: dict | None = None
    intermediate: list[dict] = field(default_factory=list)
    progress: float = 0.0
    reason: str = ""
    created_at: str = field(default_factory=_now_iso)
    started_at: str = ""
    completed_at: str = ""
    receipt: dict | None = None
    stream: asyncio.Queue | None = None
    task: asyncio.Task | None = None
    started_monotonic: float = 0.0
    finished_monotonic: float = 0.0
    current_container: str = ""
    # a private job: its output leaves the node only sealed to the customer
    private: PrivateSeal | None = None
    watcher: JobWatcher | None = None

    @property
    def finished(self) -> bool:
        return self.status != RUNNING

    def as_result(self, intermediate: bool = False) -> dict:
        """Infernet's ``JobResult``, plus progress, the failure reason and the receipt."""
        body: dict[str, Any] = {"id": self.id, "status": self.status, "result": self.result}
        if intermediate:
            body["intermediate_results"] = list(self.intermediate)
        body["progress"] = round(self.progress, 4)
        if self.reason:
            body["reason"] = self.reason
        if self.receipt:
            body["receipt"] = self.receipt
        return body


class JobStore:
    def __init__(self, config: AgentConfig) -> None:
        self._config = config
        self._jobs: dict[str, Job] = {}
        self._by_client: dict[str, dict[str, None]] = collections.defaultdict(dict)
        self._finished: collections.deque[Job] = collections.deque()
        self.pending = 0

    def __len__(self) -> int:
        return len(self._jobs)

    def reserve_slot(self) -> None:
        if self.pending >= self._config.max_pending_jobs:
            raise AtCapacity("Node at capacity", pending=self.pending, limit=self._config.max_pending_jobs)

    def add(self, job: Job) -> None:
        self.reserve_slot()
        self._jobs[job.id] = job
        self._by_client[job.client_ip][job.id] = None
        if job.finished:
            self._finished.append(job)
        else:
            self.pending += 1

    def get(self, job_id: str, client_ip: str | None = None) -> Job | None:
        job = self._jobs.get(job_id)
        if job is None or (client_ip is not None and job.client_ip != client_ip):
            return None
        return job

    def ids_for(self, client_ip: str, pending: bool | None = None) -> list[str]:
        ids = self._by_client.get(client_ip, {})
        if pending is None:
            return list(ids)
        return [i for i in ids if (not self._jobs[i].finished) is pending]

    def running_jobs(self) -> list[Job]:
        return [job for job in self._jobs.values() if not job.finished]

    def record_status(self, *, job_id: str, client_ip: str, containers: list[str], status: str) -> Job:
        """Track a job that a legacy container runs on its own (``PUT /api/status``)."""
        job = self._jobs.get(job_id)
        if job is None:
            job = Job(id=job_id, client_ip=client_ip, containers=containers, data={})
            self.add(job)
        elif job.task is not None:
            raise AgentError("Job is run by this node; its status cannot be set", http_status=409, id=job_id)
        if status != RUNNING and not job.finished:
            job.status = status
            job.completed_at = _now_iso()
            self.mark_finished(job)
        return job

    def mark_finished(self, job: Job) -> None:
        self.pending -= 1
        job.finished_monotonic = time.monotonic()
        self._finished.append(job)
        self.evict()

    def evict(self) -> None:
        horizon = time.monotonic() - self._config.result_ttl_seconds
        while self._finished and (
            len(self._finished) > self._config.max_finished_jobs or self._finished[0].finished_monotonic < horizon
        ):
            job = self._finished.popleft()
            self._jobs.pop(job.id, None)
            client = self._by_client.get(job.client_ip)
            if client is not None:
                client.pop(job.id, None)
                if not client:
                    del self._by_client[job.client_ip]


class JobRunner:
    """Runs a job's containers in order and settles it: result, receipt, stream end."""

    def __init__(self, config: AgentConfig, runtimes: dict[str, Runtime], store: JobStore, identity: Identity, node_id: str) -> None:
        self._config = config
        self._runtimes = runtimes
        self._store = store
        self._identity = identity
        self.node_id = node_id

    def submit(self, *, client_ip: str, containers: list[str], data: Any, requires_proof: bool, stream: bool,
               private: PrivateSeal | None = None, watcher: JobWatcher | None = None, job_id: str = "") -> Job:
        job = Job(
            id=job_id or str(uuid.uuid4()),
            client_ip=client_ip,
            containers=containers,
            data=data,
            requires_proof=requires_proof,
            stream=asyncio.Queue() if stream else None,
            private=private,
            watcher=watcher,
        )
        self._store.add(job)
        job.task = asyncio.create_task(self._run(job))
        return job

    async def cancel(self, job: Job) -> None:
        if job.finished or job.task is None:
            return
        job.task.cancel()
        # the runner settles the job as it unwinds; wait so the caller sees it final
        await asyncio.wait({job.task})

    async def _run(self, job: Job) -> None:
        job.started_at = _now_iso()
        job.started_monotonic = time.monotonic()
        count = len(job.containers)
        data = job.data
        try:
            if job.private is not None and job.private.refusal:
                self._fail(job, job.containers[0], job.private.refusal, "invalid_request")
                return
            for index, container_id in enumerate(job.containers):
                job.current_container = container_id
                last = index == count - 1
                # a private job's output is never streamed: chunks would leave the node in plaintext
                stream = last and (job.stream is not None or job.watcher is not None) and job.private is None
                output = await self._call(job, container_id, data, index, count, stream=stream)
                if output is None and job.finished:
                    return
                if last:
                    job.result = {"container": container_id, "output": output}
                else:
                    job.intermediate.append({"container": container_id, "output": output})
                data = output
            if job.watcher is not None and self._too_large(job, job.watcher.max_result_bytes):
                return
            job.progress = 1.0
            self._finish(job, SUCCESS)
        except asyncio.CancelledError:
            job.result = {"container": job.current_container, "error": "Job cancelled"}
            self._finish(job, FAILED, reason=CANCELLED_REASON)
        except Exception as exc:  # a bug here must still settle the job, not leave it running
            log.exception("job %s failed inside the agent", job.id)
            job.result = {"container": job.current_container, "error": f"Internal agent error: {exc}"}
            self._finish(job, FAILED, reason="internal_error")

    async def _call(self, job: Job, container_id: str, data: Any, index: int, count: int, stream: bool) -> Any:
        container = self._config.container(container_id)
        runtime = self._runtimes[container_id]
        streamed = False

        def on_event(event: Event) -> None:
            nonlocal streamed
            if isinstance(event, Progress):
                job.progress = (index + event.fraction) / count
                if job.watcher is not None:
                    job.watcher.progress(job)
            elif isinstance(event, Chunk) and stream and event.data:
                streamed = True
                self._emit(job, event.data)

        call = ContainerCall(job_id=job.id, data=data, requires_proof=job.requires_proof, stream=stream)
        try:
            async with asyncio.timeout(container.timeout_seconds):
                output = await runtime.run(call, on_event)
        except TimeoutError:
            return self._fail(job, container_id, f"Container timed out after {container.timeout_seconds:g}s", "timeout")
        except ContainerFailure as failure:
            return self._fail(job, container_id, failure.message, "container_error")
        if stream and not streamed:
            # a container that does not stream still gives the stream its whole output
            self._emit(job, json_bytes(output))
        return output

    def _too_large(self, job: Job, limit: int) -> bool:
        """Fail a result its watcher could never take: offered again on every reconnect, it would
        never land, and the job would end only at its deadline. A private result grows by a
        third once sealed (base64url)."""
        size = len(json.dumps([job.result, job.intermediate], separators=(",", ":")))
        room = limit * 3 // 4 if job.private is not None else limit
        if size <= room:
            return False
        self._fail(job, job.current_container, f"the output is {size} bytes as JSON; the marketplace takes at "
                                               f"most {room}", "output_too_large")
        return True

    @staticmethod
    def _emit(job: Job, data: bytes) -> None:
        if job.stream is not None:
            job.stream.put_nowait(data)
        if job.watcher is not None:
            job.watcher.chunk(job, data)

    def _fail(self, job: Job, container_id: str, message: str, reason: str) -> None:
        """The first failure stops the chain with a ``ContainerError``."""
        job.result = {"container": container_id, "error": message}
        self._finish(job, FAILED, reason=reason)

    def _finish(self, job: Job, status: str, reason: str = "") -> None:
        if job.finished:
            return
        job.status = status
        job.reason = reason
        job.completed_at = _now_iso()
        duration_ms = int((time.monotonic() - job.started_monotonic) * 1000)
        if job.private is not None:
            fields = self._seal_private(job, status)
        else:
            fields = {
                "job_id": job.id,
                "node_id": self.node_id,
                "model_id": ",".join(job.containers),
                "key_id": "",
                "request_aad_hash": "",
                "request_ciphertext_sha256": sha256_hex(json_bytes(job.data)),
                "response_aad_hash": "",
                "response_ciphertext_sha256": sha256_hex(json_bytes(job.result)),
            }
        job.receipt = self._identity.sign_receipt(
            {
                **fields,
                "status": status,
                "started_at": job.started_at,
                "completed_at": job.completed_at,
                "duration_ms": str(duration_ms),
            }
        ).as_dict()
        if job.stream is not None:
            job.stream.put_nowait(_STREAM_END)
        self._store.mark_finished(job)
        if job.watcher is not None:
            job.watcher.finished(job)

    @staticmethod
    def _seal_private(job: Job, status: str) -> dict[str, str]:
        """Seal the result to the customer and forget the plaintext; the receipt's hashes."""
        result = job.result or {}
        plaintext = {"output": result.get("output")} if status == SUCCESS else {"error": str(result.get("error", ""))}
        response = job.private.seal(plaintext)
        job.result = {"container": result.get("container", job.current_container), "encrypted_response": response}
        job.data = None
        job.intermediate = []
        return job.private.receipt_fields(response)
