"""Private jobs on the node: open the customer's envelope, and seal the result back to them.

The marketplace hands the node the job's record (job id, customer, model, expiry)
and the envelope. The node rebuilds the transport context from that record and its
own node id, never from the envelope, so a ciphertext sealed for another job,
node or model does not open here. The plaintext lives only inside the job's run:
the node keeps (and reports) the sealed response and a signed receipt over hashes.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from nodes.agent.config import AgentConfig
from nodes.agent.errors import AgentError, BadRequest
from nodes.agent.transport_keys import TransportKeyring
from wire.bounded_json import JsonRejected, loads_bounded
from wire.encoding import sha256_hex
from wire.envelope import Context, TransportError, b64u_decode, seal_response

PRIVATE_JOB_FIELDS = {"job_id", "customer_id", "model_id", "expires_at", "encrypted_request"}


@dataclass
class PrivateSeal:
    """What the node needs to seal the response and sign the receipt of one private job."""

    context: Context
    request_envelope: dict
    request_aad_hash: str
    response_secret: bytes | None
    # set when the request opened but its plaintext is not a request this node can run
    refusal: str = ""

    def seal(self, plaintext: dict) -> dict[str, str]:
        envelope = seal_response(
            plaintext=json.dumps(plaintext, separators=(",", ":")).encode("utf-8"),
            context=self.context,
            request_envelope=self.request_envelope,
            request_aad_hash=self.request_aad_hash,
            response_secret=self.response_secret,
        )
        self.response_secret = None  # single use: nothing can be sealed to this client again
        return envelope

    def receipt_fields(self, response: dict[str, str]) -> dict[str, str]:
        return {
            "job_id": self.context.job_id,
            "node_id": self.context.node_id,
            "model_id": self.context.model_id,
            "key_id": self.request_envelope["key_id"],
            "request_aad_hash": self.request_aad_hash,
            "request_ciphertext_sha256": sha256_hex(b64u_decode(self.request_envelope["ciphertext"], "ciphertext")),
            "response_aad_hash": response["aad_hash"],
            "response_ciphertext_sha256": sha256_hex(b64u_decode(response["ciphertext"], "ciphertext")),
        }


@dataclass(frozen=True)
class OpenedJob:
    container_id: str
    data: Any
    seal: PrivateSeal


class PrivateRefused(AgentError):
    """The node will not run this private job; ``code`` is the marketplace's problem code."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message, http_status=400, code=code)


def _container_for(config: AgentConfig, model_id: str) -> str:
    for container in config.containers:
        if container.external and model_id in container.models:
            return container.id
    raise PrivateRefused(f"this node does not serve model {model_id}", code="unknown_model")


def _request_data(plaintext: bytes) -> tuple[Any, str]:
    """The container's input from the request plaintext ``{"input": ..., "params": {...}}``."""
    try:
        request = loads_bounded(plaintext, max_bytes=len(plaintext), storable=False)
    except JsonRejected as exc:
        return None, f"the request plaintext is not UTF-8 JSON within the limits: {exc}"
    if not isinstance(request, dict) or "input" not in request or set(request) - {"input", "params"}:
        return None, 'the request plaintext must be {"input": ..., "params": {...}}'
    params = request.get("params")
    if params is not None and not isinstance(params, dict):
        return None, "params must be a JSON object"
    value = request["input"]
    data = dict(value) if isinstance(value, dict) else {"input": value}
    if params:
        data["params"] = params
    return data, ""


def private_job_open(body: Any, *, config: AgentConfig, keyring: TransportKeyring, node_id: str) -> OpenedJob:
    if not isinstance(body, dict) or set(body) != PRIVATE_JOB_FIELDS:
        raise BadRequest("a private job is exactly {" + ", ".join(sorted(PRIVATE_JOB_FIELDS)) + "}")
    if not all(isinstance(body[name], str) for name in PRIVATE_JOB_FIELDS - {"encrypted_request"}):
        raise BadRequest("job_id, customer_id, model_id and expires_at are strings")
    if not body["expires_at"].isdigit():
        raise BadRequest("expires_at is Unix seconds, as a decimal string")
    container_id = _container_for(config, body["model_id"])
    if int(body["expires_at"]) <= time.time():
        raise PrivateRefused("the request has expired", code="expired_request")
    context = Context(
        job_id=body["job_id"], customer_id=body["customer_id"], node_id=node_id,
        model_id=body["model_id"], expires_at=body["expires_at"],
    )
    envelope = body["encrypted_request"]
    try:
        opened = keyring.open(envelope, context)
    except TransportError as exc:
        raise PrivateRefused(str(exc), code=exc.code) from None
    data, refusal = _request_data(opened.plaintext)
    seal = PrivateSeal(
        context=context,
        request_envelope=dict(envelope),
        request_aad_hash=opened.request_aad_hash,
        response_secret=opened.response_secret,
        refusal=refusal,
    )
    return OpenedJob(container_id=container_id, data=data, seal=seal)
