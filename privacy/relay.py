"""What dispatch does differently for a private job: the push it sends, the result it accepts.

The node gets the job's record and the envelope, nothing the marketplace could
read. What comes back is accepted only if it is a well-formed sealed response
and a receipt the node signed over this job, this node, this key, and the very
ciphertexts the marketplace holds, with ``receipt_hash`` the hash of that receipt.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from jobs.models import Job
from nodes.models import Node
from wire.encoding import sha256_hex
from wire.envelope import Context, TransportError, b64u_decode, parse_envelope, request_aad, response_aad
from wire.keys import private_receipt_check

PRIVATE_PUSH_PATH = "/api/private/jobs/stream"


def private_context(job: Job) -> Context:
    """The transport context, rebuilt from the job's own record."""
    return Context(
        job_id=job.public_id,
        customer_id=job.customer.public_id,
        node_id=job.pinned_node.public_id,
        model_id=job.model,
        expires_at=job.request_expires_at,
    )


def private_push(job: Job) -> dict:
    return {
        "job_id": job.public_id,
        "customer_id": job.customer.public_id,
        "model_id": job.model,
        "expires_at": job.request_expires_at,
        "encrypted_request": job.encrypted_request,
    }


@dataclass(frozen=True)
class PrivateResult:
    encrypted_response: dict
    receipt: dict
    receipt_hash: str
    status: str  # the node's: "success" or "failed"


def private_result_check(*, job: Job, node: Node, result: dict) -> PrivateResult:
    """Accept the node's sealed result and receipt, or raise ``TransportError`` with the code to fail with."""
    container_result = result.get("result") if isinstance(result.get("result"), dict) else {}
    response = container_result.get("encrypted_response")
    try:
        parsed = parse_envelope(response)
    except TransportError as exc:
        raise TransportError(f"the node's encrypted_response is malformed: {exc}", code="invalid_encrypted_response")
    request = job.encrypted_request
    context = private_context(job)
    request_aad_hash = hashlib.sha256(request_aad(context)).hexdigest()
    response_aad_hash = hashlib.sha256(response_aad(context, request_aad_hash)).hexdigest()
    if (response["key_id"], response["client_public_key_x25519"]) != (request["key_id"], request["client_public_key_x25519"]):
        raise TransportError("the response does not answer this request's key", code="invalid_encrypted_response")
    if parsed.aad_hash != response_aad_hash:
        raise TransportError("the response was not sealed for this job", code="invalid_encrypted_response")
    receipt = result.get("receipt")
    status = result.get("status")
    body = private_receipt_check(
        receipt,
        node.identity_public_key,
        expected={
            "job_id": job.public_id,
            "node_id": node.public_id,
            "model_id": job.model,
            "key_id": request["key_id"],
            "request_aad_hash": request_aad_hash,
            "request_ciphertext_sha256": sha256_hex(b64u_decode(request["ciphertext"], "ciphertext")),
            "response_aad_hash": response_aad_hash,
            "response_ciphertext_sha256": sha256_hex(parsed.ciphertext),
            "status": str(status),
        },
    )
    if not str(body["duration_ms"]).isdigit():
        raise TransportError("the receipt's duration_ms is not a whole number", code="invalid_receipt")
    return PrivateResult(encrypted_response=response, receipt=receipt, receipt_hash=receipt["hash"], status=status)
