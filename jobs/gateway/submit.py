"""A JobRequest (or a DelegatedSubscriptionRequest) from the gateway, made a marketplace job.

The checks and messages follow the Infernet node's, so a client written for an
Infernet node reads our refusals unchanged; a refusal the marketplace adds
(money, quotas) keeps its API status and carries its problem code in ``params``.
"""
from __future__ import annotations

from django.conf import settings

from jobs.gateway.errors import InfernetError
from jobs.services.submit import JobSpec, job_submit
from marketplace.authentication import CustomerPrincipal
from marketplace.errors import ApiError
from nodes.agent.errors import AgentError
from nodes.agent.guards import JobRequest, job_request_shape
from nodes.selectors import containers_offered
from wire.bounded_json import TOO_LARGE, UNSTORABLE, JsonRejected, loads_bounded


def infernet_checked(function, *args):
    """Run one of the node agent's Infernet checks; its refusal in the gateway's error family."""
    try:
        return function(*args)
    except AgentError as error:
        raise InfernetError(error.error, status=error.status, **error.params) from None


def parse_body(raw: bytes):
    """The body, held to the size and depth limits before it is parsed (``wire.bounded_json``)."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    try:
        return loads_bounded(raw or b"null", max_bytes=limit)
    except JsonRejected as exc:
        if exc.code == TOO_LARGE:
            raise InfernetError("Request body too large", status=413, limit=limit) from None
        if exc.code == UNSTORABLE:
            raise InfernetError(str(exc)) from None
        raise InfernetError("Could not parse request body as JSON", detail=str(exc)) from None


def parse_job_request(body) -> JobRequest:
    """The agent's shape checks, then what this marketplace offers in place of its container list."""
    request = infernet_checked(job_request_shape, body)
    offered = containers_offered()
    for container in request.containers:
        if container not in offered:
            raise InfernetError("Container not supported", container=container)
    if request.requires_proof:
        # no node on this marketplace advertises proofs
        raise InfernetError("Container does not generate proofs", container=request.containers[-1])
    return request


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
