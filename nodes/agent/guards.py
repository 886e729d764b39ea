"""What a job request must pass before it runs, and the per-client rate limit.

The messages are Infernet's guardian messages, so that clients written for an
Infernet node read our refusals unchanged.
"""
from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from typing import Any

from nodes.agent.config import AgentConfig, RateLimitConfig
from nodes.agent.errors import BadRequest, Forbidden, RateLimited

JOB_REQUEST_FIELDS = {"containers", "data", "requires_proof"}


@dataclass(frozen=True)
class JobRequest:
    containers: list[str]
    data: Any
    requires_proof: bool


def is_delegated_subscription(body: Any) -> bool:
    return isinstance(body, dict) and "subscription" in body


def job_request_shape(body: Any) -> JobRequest:
    """A JobRequest's fields and types, checked in Infernet's order, messages as Infernet's."""
    if not isinstance(body, dict):
        raise BadRequest("Job request must be a JSON object")
    unknown = set(body) - JOB_REQUEST_FIELDS
    if unknown:
        raise BadRequest("Unknown fields in job request", fields=sorted(unknown))
    containers = body.get("containers")
    if not isinstance(containers, list) or not all(isinstance(c, str) for c in containers):
        raise BadRequest("containers must be a list of container IDs", containers=containers)
    if not containers:
        raise BadRequest("No containers specified")
    if "data" not in body:
        raise BadRequest("data is required")
    data = body["data"]
    if not isinstance(data, dict):
        raise BadRequest("data must be a JSON object")
    requires_proof = body.get("requires_proof", False)
    if not isinstance(requires_proof, bool):
        raise BadRequest("requires_proof must be a boolean")
    return JobRequest(containers=containers, data=data, requires_proof=requires_proof)


def flag_value(name: str, raw: str | None) -> bool | None:
    """A true/false query parameter, as Infernet spells it; None when it is absent."""
    if raw is None:
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise BadRequest(f"{name} must be true or false", **{name: raw})


def parse_job_request(body: Any, config: AgentConfig, client_ip: str, trusted: bool = False) -> JobRequest:
    """Validate one JobRequest (Infernet's guardian, in its order) or raise an ``AgentError``.

    ``trusted`` is the marketplace, over the node socket the node itself opened: address
    allow-lists are for callers of the open Infernet API, not for it.
    """
    if is_delegated_subscription(body):
        # no chain on this node: Infernet answers delegated subscriptions this way
        raise BadRequest("Chain not enabled")
    request = job_request_shape(body)
    containers, data, requires_proof = request.containers, request.data, request.requires_proof

    for container_id in containers:
        if config.container(container_id) is None:
            raise BadRequest("Container not supported", container=container_id)
    if not config.container(containers[0]).external:
        raise BadRequest("First container must be external", first_container=containers[0])
    if requires_proof and not config.container(containers[-1]).generates_proofs:
        raise BadRequest("Container does not generate proof", container=containers[-1])
    for container_id in containers if not trusted else ():
        networks = config.container(container_id).networks
        if networks and not _address_in(client_ip, networks):
            raise Forbidden("Container not allowed for address", container=container_id, address=client_ip)
    return JobRequest(containers=containers, data=data, requires_proof=requires_proof)


def _address_in(client_ip: str, networks) -> bool:
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:  # a peer with no IP (a unix socket) matches no allow-list
        return False
    return any(address in network for network in networks)


class RateLimiter:
    """A token bucket per client address: ``num_requests`` per ``period``, bursting to that many."""

    def __init__(self, limit: RateLimitConfig) -> None:
        self._capacity = float(limit.num_requests)
        self._rate = limit.num_requests / limit.period
        self._buckets: dict[str, tuple[float, float]] = {}

    def check(self, client: str) -> None:
        now = time.monotonic()
        tokens, last = self._buckets.get(client, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - last) * self._rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            retry_after = (1.0 - tokens) / self._rate
            raise RateLimited("Too many requests", retry_after=round(retry_after, 3))
        self._buckets[client] = (tokens - 1.0, now)

    def forget_idle(self) -> None:
        """Drop full buckets, so that the table holds only clients seen recently."""
        now = time.monotonic()
        refill = self._capacity / self._rate
        self._buckets = {c: b for c, b in self._buckets.items() if now - b[1] < refill}
