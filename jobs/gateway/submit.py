"""A JobRequest (or a DelegatedSubscriptionRequest) from the gateway, made a marketplace job.

The checks and messages follow the Infernet node's, so a client written for an
Infernet node reads our refusals unchanged; a refusal the marketplace adds
(money, quotas) keeps its API status and carries its problem code in ``params``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from jobs.gateway.errors import InfernetError
from jobs.services.submit import JobSpec, job_submit
from marketplace.authentication import CustomerPrincipal
from marketplace.errors import ApiError
from marketplace.json_input import NUL_MESSAGE, contains_nul
from nodes.selectors import containers_offered

JOB_REQUEST_FIELDS = {"containers", "data", "requires_proof"}


def parse_body(raw: bytes):
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InfernetError("Could not parse request body as JSON", detail=str(exc)) from None
    if contains_nul(body):
        raise InfernetError(NUL_MESSAGE)
    return body


@dataclass(frozen=True)
class JobRequest:
    containers: list[str]
    data: dict


def parse_job_request(body) -> JobRequest:
    if not isinstance(body, dict):
        raise InfernetError("Job request must be a JSON object")
    unknown = set(body) - JOB_REQUEST_FIELDS
    if unknown:
        raise InfernetError("Unknown fields in job request", fields=sorted(unknown))
    containers = body.get("containers")
    if not isinstance(containers, list) or not all(isinstance(c, str) for c in containers):
        raise InfernetError("containers must be a list of container IDs", containers=containers)
    if not containers:
        raise InfernetError("No containers specified")
    if "data" not in body:
        raise InfernetError("data is required")
    if not isinstance(body["data"], dict):
        raise InfernetError("data must be a JSON object")
    requires_proof = body.get("requires_proof", False)
    if not isinstance(requires_proof, bool):
        raise InfernetError("requires_proof must be a boolean")
    offered = containers_offered()
    for container in containers:
        if container not in offered:
            raise InfernetError("Container not supported", container=container)
    if requires_proof:
        # no node on this marketplace advertises proofs
        raise InfernetError("Container does not generate proofs", container=containers[-1])
    return JobRequest(containers=containers, data=body["data"])


def job_spec(request: JobRequest) -> JobSpec:
    return JobSpec(
        model="", containers=request.containers, input=request.data,
        output_config={"destination": "local", "format": "json"}, gpu_type="", gpu_count=0, min_vram_gb=0,
        priority="normal", timeout_seconds=3600,
    )


def submit(principal: CustomerPrincipal, request: JobRequest, job_id: str | None = None):
    try:
        return job_submit(principal=principal, spec=job_spec(request), job_id=job_id).job
    except ApiError as error:
        raise InfernetError(error.detail, status=error.status, code=error.code) from None


def job_request_submit(principal: CustomerPrincipal, body) -> dict:
    """``{"id": ...}`` for a JobRequest; ``{}`` for a delegated subscription (its results go on "chain")."""
    if isinstance(body, dict) and "subscription" in body:
        from jobs.subscriptions.services import delegated_subscription_create

        delegated_subscription_create(principal=principal, body=body)
        return {}
    return {"id": submit(principal, parse_job_request(body)).public_id}
