"""HTTP calls from the marketplace to a node agent, authenticated with the node's push token."""
from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass

import requests

from nodes.models import Node

CONNECT_TIMEOUT = 5
CALL_TIMEOUT = 10

_local = threading.local()


def _session() -> requests.Session:
    """One keep-alive session per worker thread: no new connection to the node for every call."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


class NodeUnreachable(Exception):
    """The node could not be reached, or broke off: the attempt fails over."""


class NodeRefused(Exception):
    """The node answered the push with an error: the attempt fails over (a private job fails).

    ``code`` is the node's problem code when it gave one (a private job's
    ``invalid_encrypted_request``, ``unknown_key_id``, ``expired_request``...).
    """

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


def _headers(node: Node) -> dict[str, str]:
    return {"Authorization": f"Bearer {node.push_token}"}


@dataclass
class StreamEvent:
    kind: str  # "id", "chunk" (text), "result" (the final JobResult), "end" or "error"
    value: object = None


class JobStream:
    """A job pushed on the node's /api/jobs/stream, read by a thread into a queue.

    The reading thread blocks on the socket; the worker's own thread stays free to
    renew its lease, watch the deadline and notice a cancel between chunks.
    """

    def __init__(self, node: Node, body: dict, path: str = "/api/jobs/stream") -> None:
        try:
            self._response = _session().post(
                f"{node.url.rstrip('/')}{path}",
                json=body,
                headers={**_headers(node), "X-Stream-Format": "events"},
                stream=True,
                timeout=(CONNECT_TIMEOUT, None),
            )
        except requests.RequestException as exc:
            raise NodeUnreachable(f"node {node.public_id} is unreachable: {type(exc).__name__}") from None
        if self._response.status_code != 200:
            code = ""
            try:
                payload = self._response.json()
                message = payload.get("error", "")
                code = str((payload.get("params") or {}).get("code", ""))
            except (ValueError, AttributeError):
                message = self._response.text[:200]
            self._response.close()
            raise NodeRefused(
                f"node {node.public_id} refused the job (HTTP {self._response.status_code}): {message}", code=code
            )
        self.events: queue.Queue[StreamEvent] = queue.Queue()
        self._thread = threading.Thread(target=self._read, name=f"stream-{node.public_id}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        """The agent's "events" stream format: the job id line, then JSON lines."""
        buffered = b""
        job_id_sent = False
        try:
            for chunk in self._response.iter_content(chunk_size=None):
                buffered += chunk
                while b"\n" in buffered:
                    line, _, buffered = buffered.partition(b"\n")
                    if not job_id_sent:
                        self.events.put(StreamEvent("id", line.decode().strip()))
                        job_id_sent = True
                        continue
                    event = json.loads(line)
                    if "output" in event:
                        self.events.put(StreamEvent("chunk", str(event["output"])))
                    elif "result" in event:
                        self.events.put(StreamEvent("result", event["result"]))
            self.events.put(StreamEvent("end") if job_id_sent else StreamEvent("error", "the stream ended before the job id"))
        except Exception as exc:  # the connection broke (the node died or was cut off), or it sent garbage
            self.events.put(StreamEvent("error", f"{type(exc).__name__}: {exc}"))

    def close(self) -> None:
        self._response.close()


def node_job_result(node: Node, node_job_id: str) -> dict | None:
    try:
        response = _session().get(
            f"{node.url.rstrip('/')}/api/jobs",
            params={"id": node_job_id, "intermediate": "true"},
            headers=_headers(node),
            timeout=(CONNECT_TIMEOUT, CALL_TIMEOUT),
        )
        response.raise_for_status()
        results = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise NodeUnreachable(f"node {node.public_id} did not answer for job {node_job_id}: {exc}") from None
    return results[0] if results else None


def node_job_cancel(node: Node, node_job_id: str) -> None:
    try:
        _session().delete(
            f"{node.url.rstrip('/')}/api/jobs/{node_job_id}",
            headers=_headers(node),
            timeout=(CONNECT_TIMEOUT, CALL_TIMEOUT),
        )
    except requests.RequestException as exc:
        raise NodeUnreachable(f"node {node.public_id} did not take the cancel: {exc}") from None
