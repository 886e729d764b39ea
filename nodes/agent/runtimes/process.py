"""Local-process containers, for machines without Docker (and the embedded demo).

Two forms:
- an ``entrypoint`` (``module:function``) runs in warm worker processes, one job
  at a time each, so a job pays no interpreter start-up; a worker that crashes,
  hangs past its timeout or is cancelled is killed and replaced;
- a ``command`` runs once per job: the input as JSON on stdin, the output as one
  JSON document on stdout (streamed as chunks while it is written), the error in
  stderr when it exits non-zero.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from nodes.agent.errors import ContainerFailure
from nodes.agent.runtimes.base import Chunk, ContainerCall, EventSink, Progress, Runtime
from wire.bounded_json import loads_bounded

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[3]
# one protocol line may carry a whole output; the body limit keeps inputs smaller
LINE_LIMIT = 256 * 1024 * 1024
STDERR_TAIL_LINES = 20


class _WorkerDied(ContainerFailure):
    """The worker process itself exited mid-job: it is replaced, unlike after an error reply."""


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH", "")]))
    return env


async def _collect_stderr(stream: asyncio.StreamReader, tail: collections.deque, label: str) -> None:
    async for raw in stream:
        line = raw.decode("utf-8", errors="replace").rstrip()
        tail.append(line)
        log.debug("%s: %s", label, line)


def _kill(process: asyncio.subprocess.Process) -> None:
    # the worker runs in its own process group, so a command's children die with it
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


class _Worker:
    """One warm process serving an entry point."""

    def __init__(self, process: asyncio.subprocess.Process, label: str) -> None:
        self.process = process
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._stderr_task = asyncio.create_task(_collect_stderr(process.stderr, self.stderr_tail, label))

    @classmethod
    async def spawn(cls, entrypoint: str, label: str) -> "_Worker":
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "nodes.agent.runtimes.worker",
            entrypoint,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=_child_env(),
            cwd=str(PROJECT_ROOT),
            limit=LINE_LIMIT,
            start_new_session=True,
        )
        return cls(process, label)

    async def call(self, call: ContainerCall, on_event: EventSink) -> Any:
        request = json.dumps({"input": call.data, "stream": call.stream}) + "\n"
        self.process.stdin.write(request.encode("utf-8"))
        await self.process.stdin.drain()
        while True:
            line = await self.process.stdout.readline()
            if not line:
                raise _WorkerDied(await self.exit_description())
            message = loads_bounded(line, max_bytes=len(line), storable=False)
            if "output" in message:
                return message["output"]
            if "error" in message:
                raise ContainerFailure(str(message["error"]))
            if "progress" in message:
                on_event(Progress(float(message["progress"])))
            elif "chunk" in message:
                on_event(Chunk(str(message["chunk"]).encode("utf-8")))

    async def exit_description(self) -> str:
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout=2)
        except asyncio.TimeoutError:
            code = None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._stderr_task), timeout=0.5)
        detail = " | ".join(self.stderr_tail)[-500:]
        return f"container process exited unexpectedly (exit code {code})" + (f": {detail}" if detail else "")

    def kill(self) -> None:
        _kill(self.process)
        self._stderr_task.cancel()


class ProcessRuntime(Runtime):
    async def start(self) -> None:
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._workers: set[_Worker] = set()
        self._slots = asyncio.Semaphore(self.container.concurrency)
        self._replacements: set[asyncio.Task] = set()
        if self.container.entrypoint:
            for _ in range(self.container.workers):
                await self._add_worker()

    async def stop(self) -> None:
        for task in self._replacements:
            task.cancel()
        for worker in list(self._workers):
            worker.kill()
        for worker in list(self._workers):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(worker.process.wait(), timeout=5)
        self._workers.clear()

    async def _add_worker(self) -> None:
        worker = await _Worker.spawn(self.container.entrypoint, f"container {self.container.id}")
        self._workers.add(worker)
        self._idle.put_nowait(worker)

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self._workers.discard(worker)
        task = asyncio.create_task(self._add_worker())
        self._replacements.add(task)
        task.add_done_callback(self._replacements.discard)

    async def run(self, call: ContainerCall, on_event: EventSink) -> Any:
        if self.container.entrypoint:
            return await self._run_entrypoint(call, on_event)
        async with self._slots:
            return await self._run_command(call, on_event)

    async def _run_entrypoint(self, call: ContainerCall, on_event: EventSink) -> Any:
        worker = await self._idle.get()
        healthy = False
        try:
            result = await worker.call(call, on_event)
            healthy = True
            return result
        except _WorkerDied:
            raise
        except ContainerFailure:
            healthy = True  # the entry point raised; its worker goes on serving
            raise
        except (ValueError, UnicodeDecodeError) as exc:
            raise ContainerFailure(f"container sent a malformed reply: {exc}") from None
        finally:
            # on cancel or timeout the worker may still be busy with this job: kill it
            if healthy:
                self._idle.put_nowait(worker)
            else:
                self._replace(worker)

    async def _run_command(self, call: ContainerCall, on_event: EventSink) -> Any:
        try:
            process = await asyncio.create_subprocess_exec(
                *self.container.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**_child_env(), **self.container.env},
                cwd=str(PROJECT_ROOT),
                start_new_session=True,
            )
        except OSError as exc:
            raise ContainerFailure(f"cannot start {self.container.command[0]}: {exc}") from None
        tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        stderr_task = asyncio.create_task(_collect_stderr(process.stderr, tail, f"container {self.container.id}"))
        try:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                process.stdin.write(json.dumps(call.data).encode("utf-8"))
                await process.stdin.drain()
                process.stdin.close()
            output = bytearray()
            while chunk := await process.stdout.read(65536):
                output += chunk
                if call.stream:
                    on_event(Chunk(bytes(chunk)))
            code = await process.wait()
            await stderr_task
        except BaseException:
            _kill(process)
            stderr_task.cancel()
            raise
        if code != 0:
            detail = " | ".join(tail)[-500:]
            raise ContainerFailure(f"container exited with code {code}" + (f": {detail}" if detail else ""))
        try:
            return loads_bounded(output, max_bytes=len(output), storable=False)
        except (ValueError, UnicodeDecodeError):
            preview = bytes(output[:80]).decode("utf-8", errors="replace")
            raise ContainerFailure(f"container output is not valid JSON: {preview!r}") from None
