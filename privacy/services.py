"""Submitting a private job: check the envelope and the node, quote, reserve, queue.

The marketplace cannot open the envelope; it checks what it can see, before any
money moves: the envelope's shape, that the key is one the named node published
and still opens with, that the request has not expired, and that the aad_hash is
the one this job's own record gives. The job runs on the named node or nowhere.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone as dt_timezone

from django.conf import settings
from django.db import IntegrityError

from billing.services import price_within_maximum
from jobs.models import Job
from jobs.services.submit import Submission, job_create_reserved
from marketplace.authentication import CustomerPrincipal
from nodes.selectors import nodes_online
from privacy.exceptions import (
    ExpiredRequest,
    InvalidEncryptedRequest,
    NoHealthyCandidates,
    PrivateJobConflict,
    UnknownKeyId,
)
from privacy.selectors import private_gpu, private_quote
from wire.envelope import Context, TransportError, parse_envelope, request_aad
from wire.keys import transport_key_usable


@dataclass(frozen=True)
class PrivateJobRequest:
    job_id: str
    node_id: str
    model_id: str
    max_price_wei: int
    expires_at: str
    encrypted_request: dict

    def fingerprint(self) -> str:
        canonical = json.dumps(self.__dict__, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(existing: Job, principal: CustomerPrincipal, request: PrivateJobRequest) -> Submission:
    # another customer's job id is a conflict too, and says nothing about that job
    if existing.customer_id != principal.customer.pk or existing.request_hash != request.fingerprint():
        raise PrivateJobConflict(
            f"job_id {request.job_id} was already used for a different request; make a new job_id (and seal again)"
        )
    return Submission(job=existing, created=False)


def private_job_submit(*, principal: CustomerPrincipal, request: PrivateJobRequest) -> Submission:
    existing = Job.objects.filter(public_id=request.job_id).first()
    if existing is not None:
        return _replay(existing, principal, request)
    try:
        envelope = parse_envelope(request.encrypted_request)
    except TransportError as exc:
        raise InvalidEncryptedRequest(f"encrypted_request: {exc}") from None
    now = time.time()
    expires_at = int(request.expires_at)
    if expires_at <= now:
        raise ExpiredRequest(f"the request expired at {request.expires_at}; seal it again with a later expires_at")
    if expires_at > now + settings.PRIVATE_REQUEST_MAX_TTL_SECONDS:
        raise InvalidEncryptedRequest(
            f"expires_at is more than {settings.PRIVATE_REQUEST_MAX_TTL_SECONDS} s away; seal with a nearer one"
        )
    node = nodes_online().filter(public_id=request.node_id).first()
    if node is None:
        raise NoHealthyCandidates(f"node {request.node_id} is not online; list /v1/private-inference/nodes")
    if request.model_id not in node.model_map:
        raise NoHealthyCandidates(f"node {request.node_id} does not serve model {request.model_id}")
    key = next((k for k in node.transport_keys if k["key_id"] == envelope.key_id), None)
    if key is None or not transport_key_usable(key):
        raise UnknownKeyId(
            f"node {request.node_id} has no transport key {envelope.key_id} that opens requests now; "
            "seal to a key from /v1/private-inference/nodes"
        )
    context = Context(
        job_id=request.job_id, customer_id=principal.customer.public_id, node_id=node.public_id,
        model_id=request.model_id, expires_at=request.expires_at,
    )
    if envelope.aad_hash is not None and envelope.aad_hash != hashlib.sha256(request_aad(context)).hexdigest():
        raise InvalidEncryptedRequest(
            "aad_hash does not match this job (job_id, customer, node_id, model_id, expires_at): "
            "the envelope was sealed for another job"
        )
    quote = private_quote(node=node, model_id=request.model_id)
    price_within_maximum(quote=quote, max_price_wei=request.max_price_wei)
    gpu_type, gpu_count = private_gpu(node)
    fields = dict(
        public_id=request.job_id,
        is_private=True,
        pinned_node=node,
        model=request.model_id,
        input=None,
        gpu_type=gpu_type,
        gpu_count=gpu_count,
        max_price_wei=request.max_price_wei,
        encrypted_request=request.encrypted_request,
        request_expires_at=request.expires_at,
        estimated_time_seconds=quote.expected_seconds,
        request_hash=request.fingerprint(),
    )
    try:
        job = job_create_reserved(
            principal=principal, quote=quote, fields=fields,
            queue_deadline=datetime.fromtimestamp(expires_at, tz=dt_timezone.utc),
        )
    except IntegrityError:
        existing = Job.objects.filter(public_id=request.job_id).first()
        if existing is None:
            raise
        return _replay(existing, principal, request)
    return Submission(job=job, created=True)
