"""The program a process container's warm worker runs: ``python -m ... module:function``.

It loads the entry point once and then serves one job at a time, reading one JSON
line per job on stdin and answering with JSON lines on a private copy of stdout:
``{"progress": f}``, ``{"chunk": "..."}``, then ``{"output": ...}`` or
``{"error": "..."}``. Whatever the entry point prints itself goes to stderr, so a
stray ``print`` cannot corrupt the protocol.

An entry point is ``def run(data, job)``; ``job.progress(fraction)`` and
``job.emit(text)`` report as it goes, and the return value is the output.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import threading
from typing import Any, Callable, TextIO


class JobHandle:
    def __init__(self, out: TextIO, lock: threading.Lock, stream: bool) -> None:
        self._out = out
        self._lock = lock
        self.stream = stream

    def _send(self, message: dict[str, Any]) -> None:
        line = json.dumps(message) + "\n"
        with self._lock:
            self._out.write(line)
            self._out.flush()

    def progress(self, fraction: float) -> None:
        self._send({"progress": max(0.0, min(1.0, float(fraction)))})

    def emit(self, text: str | bytes) -> None:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        self._send({"chunk": text})


def load_entrypoint(spec: str) -> Callable[[Any, JobHandle], Any]:
    module_name, _, attribute = spec.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{spec} is not callable")
    return target


def serve(spec: str, stdin: TextIO, out: TextIO) -> None:
    lock = threading.Lock()
    try:
        function = load_entrypoint(spec)
        load_error = ""
    except Exception as exc:  # reported on every job instead of a crash loop
        function, load_error = None, f"cannot load entry point {spec}: {exc}"

    for line in stdin:
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            continue
        handle = JobHandle(out, lock, bool(message.get("stream")))
        if function is None:
            handle._send({"error": load_error})
            continue
        try:
            output = function(message.get("input"), handle)
            reply = json.dumps({"output": output}, allow_nan=False)
        except Exception as exc:
            reply = json.dumps({"error": str(exc) or type(exc).__name__})
        with lock:
            out.write(reply + "\n")
            out.flush()


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m nodes.agent.runtimes.worker package.module:function")
    protocol_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(sys.argv[1], sys.stdin, protocol_out)


if __name__ == "__main__":
    main()
