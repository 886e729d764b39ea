"""The agent's enrolment with a marketplace: a one-time token traded for a node id and token.

Both are kept in the state dir (mode 600). The node then dials the marketplace's
node socket with them (``nodes.agent.node_socket``); the marketplace never
connects to the node.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from nodes.agent.config import AgentConfig
from nodes.agent.hardware import hardware_capabilities
from nodes.agent.identity import Identity
from nodes.agent.transport_keys import TransportKeyring

log = logging.getLogger(__name__)

ENROLLMENT_FILE = "enrollment.json"
ENROLL_PATH = "/v1/nodes/enroll"


class LinkError(RuntimeError):
    """The agent cannot enrol with the marketplace (unreachable, refused, no token)."""


@dataclass(frozen=True)
class Enrollment:
    marketplace: str
    node_id: str
    node_token: str
    heartbeat_interval_seconds: float


def _save(path: Path, enrollment: Enrollment) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(enrollment.__dict__, handle)


def _load(path: Path, marketplace: str) -> Enrollment | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("marketplace") != marketplace:
        return None
    try:
        return Enrollment(**{name: data[name] for name in Enrollment.__dataclass_fields__})
    except KeyError:
        return None


def enrollment_request(config: AgentConfig, identity: Identity, token: str, name: str,
                       keyring: TransportKeyring) -> dict:
    models = {}
    for container in config.containers:
        for model in container.models:
            models.setdefault(model, container.id)
    return {
        "token": token,
        "name": name,
        "identity_public_key": identity.public_key_b64u,
        "containers": [c.id for c in config.containers if c.external],
        "models": models,
        "hardware": hardware_capabilities(),
        "capacity": config.capacity,
        "price_per_second_wei": config.price_per_second_wei,
        "transport_keys": keyring.published(),
    }


async def _post_signed(session: aiohttp.ClientSession, identity: Identity, url: str, path: str, body: dict,
                       token: str | None = None) -> tuple[int, dict]:
    raw = json.dumps(body, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", **identity.sign_request("POST", path, raw)}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with session.post(url.rstrip("/") + path, data=raw, headers=headers) as response:
        try:
            payload = await response.json(content_type=None)
        except (ValueError, aiohttp.ContentTypeError):
            payload = {}
        return response.status, payload if isinstance(payload, dict) else {}


async def enroll(*, marketplace: str, token: str | None, config: AgentConfig, identity: Identity, state_dir: Path,
                 name: str, keyring: TransportKeyring, wait_seconds: float = 60) -> Enrollment:
    """Use the saved enrolment for this marketplace, or enrol with ``token``.

    A saved enrolment publishes this run's transport keys in the socket's hello.
    """
    path = state_dir / ENROLLMENT_FILE
    saved = _load(path, marketplace)
    if saved is not None:
        return saved
    if not token:
        raise LinkError(f"this node is not enrolled with {marketplace}: pass --enroll-token")
    body = await asyncio.to_thread(enrollment_request, config, identity, token, name, keyring)
    deadline = asyncio.get_running_loop().time() + wait_seconds
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        while True:
            try:
                status, payload = await _post_signed(session, identity, marketplace, ENROLL_PATH, body)
                break
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
                # the marketplace may still be starting (runmarket starts both at once)
                if asyncio.get_running_loop().time() > deadline:
                    raise LinkError(f"cannot reach the marketplace at {marketplace}: {exc}") from None
                await asyncio.sleep(0.5)
    if status != 201:
        detail = payload.get("error", {}).get("detail") if isinstance(payload.get("error"), dict) else payload
        raise LinkError(f"the marketplace refused the enrolment (HTTP {status}): {detail}")
    enrollment = Enrollment(
        marketplace=marketplace,
        node_id=payload["node_id"],
        node_token=payload["node_token"],
        heartbeat_interval_seconds=float(payload.get("heartbeat_interval_seconds", 5)),
    )
    _save(path, enrollment)
    log.info("enrolled with %s as %s", marketplace, enrollment.node_id)
    return enrollment
