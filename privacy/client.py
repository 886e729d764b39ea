"""A customer's client for private inference: seal on this machine, open on this machine.

Needs ``requests`` and ``cryptography``, not Django. The marketplace it talks to
only ever sees envelopes; this client checks what the marketplace hands it:
each node's transport keys must be signed by the node's identity key (which the
caller may pin, or trust on first use and pin), and the receipt of a finished job
must be signed by that identity over this job's own ciphertexts.

    client = PrivateInferenceClient("http://127.0.0.1:8000", api_key, pins=KeyPins.at(path))
    offer = client.choose(model_id="echo")
    job = client.submit(offer, model_id="echo", input={"prompt": "hi"})
    print(client.result(job))            # waits, checks the receipt, opens, forgets the secret
"""
from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests

from wire.encoding import sha256_hex
from wire.envelope import (
    Context,
    TransportError,
    b64u_decode,
    open_response,
    request_aad,
    response_aad,
    seal_request,
)
from wire.keys import private_receipt_check, transport_key_check, transport_key_current

FINAL = {"completed", "failed", "cancelled", "expired"}


class PrivateInferenceError(Exception):
    """The marketplace refused, or what it answered does not check out; ``code`` says which."""

    def __init__(self, detail: str, code: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {detail}" if code else detail)
        self.detail, self.code, self.status = detail, code, status


class KeyPins:
    """Node identity keys this customer trusts: given up front, or pinned on first use in a file."""

    def __init__(self, pins: dict[str, str] | None = None, path: Path | None = None) -> None:
        self._pins = dict(pins or {})
        self._path = path

    @classmethod
    def at(cls, path: str | Path) -> KeyPins:
        path = Path(path).expanduser()
        pins = json.loads(path.read_text()) if path.exists() else {}
        return cls(pins, path)

    def check(self, node_id: str, identity_public_key: str) -> None:
        pinned = self._pins.get(node_id)
        if pinned is None:
            if self._path is None:
                return  # nothing pinned and nowhere to pin: trust what the marketplace lists
            self._pins[node_id] = identity_public_key
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._path.write_text(json.dumps(self._pins, indent=2, sort_keys=True))
        elif pinned != identity_public_key:
            raise PrivateInferenceError(
                f"node {node_id} now presents identity key {identity_public_key}, not the pinned {pinned}; "
                "refusing to seal to it", code="identity_key_changed",
            )


@dataclass(frozen=True)
class NodeOffer:
    node_id: str
    identity_public_key: str
    models: dict[str, int]  # model id → quoted price in wei
    transport_keys: list[dict[str, str]]
    # model id → the most a job can cost (its whole timeout): the default max_price_wei
    worst_cases: dict[str, int] = field(default_factory=dict)

    def current_key(self) -> dict[str, str]:
        key = transport_key_current(self.transport_keys)
        if key is None:
            raise PrivateInferenceError(f"node {self.node_id} has no transport key valid now", code="unknown_key_id")
        return key


@dataclass
class PendingJob:
    """A sealed, submitted job: the response secret stays here until the result is opened."""

    job_id: str
    node: NodeOffer
    context: Context
    request_envelope: dict
    request_aad_hash: str
    _response_secret: bytes | None = field(repr=False, default=None)


class PrivateInferenceClient:
    def __init__(self, base_url: str, api_key: str, *, customer_id: str | None = None, pins: KeyPins | None = None,
                 timeout: float = 30, session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._customer_id = customer_id
        self.pins = pins or KeyPins()
        self._timeout = timeout
        self._session = session or requests.Session()

    # --- HTTP ----------------------------------------------------------------------

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        try:
            response = self._session.request(
                method, self.base_url + path, json=body, timeout=self._timeout,
                headers={"Authorization": f"Bearer {self._api_key}"},
            )
        except requests.RequestException as exc:
            raise PrivateInferenceError(f"cannot reach {self.base_url}: {exc}", code="unreachable") from None
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code >= 400:
            error = payload.get("error") if isinstance(payload, dict) else None
            if isinstance(error, dict):
                raise PrivateInferenceError(str(error.get("detail", "")), str(error.get("code", "")), response.status_code)
            raise PrivateInferenceError(f"HTTP {response.status_code}", code="http_error", status=response.status_code)
        if not isinstance(payload, dict):
            raise PrivateInferenceError("the marketplace answered with something that is not JSON", code="bad_response")
        return payload

    @property
    def customer_id(self) -> str:
        if self._customer_id is None:
            self._customer_id = self._call("GET", "/v1/billing/account")["customer_id"]
        return self._customer_id

    # --- nodes ---------------------------------------------------------------------

    def nodes(self) -> list[NodeOffer]:
        """The nodes listed, each checked: pinned identity, and keys signed by that identity.

        A node whose key set does not verify is left out (the marketplace, or someone
        between, changed it), as is a node whose pinned identity changed.
        """
        offers = []
        for listed in self._call("GET", "/v1/private-inference/nodes").get("nodes", []):
            try:
                offers.append(self.verify_node(listed))
            except (PrivateInferenceError, TransportError, KeyError, TypeError, ValueError):
                continue
        return offers

    def verify_node(self, listed: dict) -> NodeOffer:
        node_id, identity = listed["node_id"], listed["identity_public_key"]
        self.pins.check(node_id, identity)
        keys = [transport_key_check(record, identity) for record in listed["transport_keys"]]
        models = {m["model_id"]: int(m["quoted_price_wei"]) for m in listed["models"]}
        worst_cases = {m["model_id"]: int(m.get("worst_case_price_wei") or m["quoted_price_wei"])
                       for m in listed["models"]}
        return NodeOffer(node_id=node_id, identity_public_key=identity, models=models, transport_keys=keys,
                         worst_cases=worst_cases)

    def choose(self, *, model_id: str, node_id: str | None = None) -> NodeOffer:
        """The cheapest verified node serving ``model_id`` (or the one named)."""
        offers = [o for o in self.nodes() if model_id in o.models and node_id in (None, o.node_id)]
        if not offers:
            raise PrivateInferenceError(
                f"no verified online node serves {model_id}" + (f" as {node_id}" if node_id else ""),
                code="no_healthy_candidates",
            )
        return min(offers, key=lambda o: (o.models[model_id], o.node_id))

    # --- jobs ----------------------------------------------------------------------

    def seal(self, node: NodeOffer, *, model_id: str, input, params: dict | None = None, ttl_seconds: int = 300,
             job_id: str | None = None) -> PendingJob:
        key = node.current_key()
        job_id = job_id or str(uuid.uuid4())
        context = Context(job_id=job_id, customer_id=self.customer_id, node_id=node.node_id, model_id=model_id,
                          expires_at=str(int(time.time()) + ttl_seconds))
        request = {"input": input} if params is None else {"input": input, "params": params}
        sealed = seal_request(
            plaintext=json.dumps(request, separators=(",", ":")).encode("utf-8"),
            context=context, key_id=key["key_id"], node_public_key=b64u_decode(key["public_key_x25519"], "key"),
        )
        return PendingJob(
            job_id=job_id, node=node, context=context, request_envelope=sealed.envelope,
            request_aad_hash=hashlib.sha256(request_aad(context)).hexdigest(),
            _response_secret=sealed.response_secret,
        )

    def send(self, job: PendingJob, *, max_price_wei: int | None = None) -> dict:
        """Submit a sealed job (again, after a lost answer: the same job_id and body give the same job)."""
        if max_price_wei is None:  # what the job may cost at most, not what it is expected to
            model = job.context.model_id
            max_price_wei = job.node.worst_cases.get(model) or job.node.models.get(model, 0)
        return self._call("POST", "/v1/private-inference/jobs", {
            "job_id": job.job_id,
            "node_id": job.node.node_id,
            "model_id": job.context.model_id,
            "max_price_wei": str(max_price_wei),
            "expires_at": job.context.expires_at,
            "encrypted_request": job.request_envelope,
        })

    def submit(self, node: NodeOffer, *, model_id: str, input, params: dict | None = None, ttl_seconds: int = 300,
               max_price_wei: int | None = None) -> PendingJob:
        job = self.seal(node, model_id=model_id, input=input, params=params, ttl_seconds=ttl_seconds)
        self.send(job, max_price_wei=max_price_wei)
        return job

    def get(self, job_id: str) -> dict:
        return self._call("GET", f"/v1/private-inference/jobs/{job_id}")

    def wait(self, job: PendingJob, *, timeout: float = 120, poll_seconds: float = 0.1) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            record = self.get(job.job_id)
            if record["status"] in FINAL:
                return record
            if time.monotonic() > deadline:
                raise PrivateInferenceError(f"job {job.job_id} still {record['status']} after {timeout:g} s",
                                            code="timeout")
            time.sleep(poll_seconds)

    def verify_receipt(self, job: PendingJob, record: dict) -> dict:
        """The node's signed receipt for this very job and these very ciphertexts."""
        receipt_hash = record.get("receipt_hash")
        response = record.get("encrypted_response")
        if not receipt_hash or not isinstance(response, dict):
            raise PrivateInferenceError(f"job {job.job_id} has no receipt yet", code="invalid_receipt")
        published = self._call("GET", f"/v1/receipts/{receipt_hash}")
        receipt = {"body": published.get("receipt"), "hash": receipt_hash, "signature": published.get("signature")}
        response_aad_hash = hashlib.sha256(response_aad(job.context, job.request_aad_hash)).hexdigest()
        try:
            return private_receipt_check(receipt, job.node.identity_public_key, expected={
                "job_id": job.job_id,
                "node_id": job.node.node_id,
                "model_id": job.context.model_id,
                "key_id": job.request_envelope["key_id"],
                "request_aad_hash": job.request_aad_hash,
                "request_ciphertext_sha256": sha256_hex(b64u_decode(job.request_envelope["ciphertext"], "ciphertext")),
                "response_aad_hash": response_aad_hash,
                "response_ciphertext_sha256": sha256_hex(b64u_decode(response["ciphertext"], "ciphertext")),
            })
        except TransportError as exc:
            raise PrivateInferenceError(str(exc), code=exc.code) from None

    def open(self, job: PendingJob, record: dict) -> dict:
        """Open the sealed response (once: the secret is dropped after)."""
        if job._response_secret is None:
            raise PrivateInferenceError("this job's response was already opened", code="already_opened")
        try:
            plaintext = open_response(envelope=record["encrypted_response"], context=job.context,
                                      request_aad_hash=job.request_aad_hash, response_secret=job._response_secret)
        except TransportError as exc:
            raise PrivateInferenceError(str(exc), code=exc.code) from None
        finally:
            job._response_secret = None
        return json.loads(plaintext)

    def result(self, job: PendingJob, *, timeout: float = 120) -> dict:
        """Wait, check the receipt, open: ``{"output": ...}`` or ``{"error": ...}`` from the node.

        A job that ended without a sealed response (refused, expired, cancelled) raises
        with the reason the marketplace recorded.
        """
        record = self.wait(job, timeout=timeout)
        if not record.get("encrypted_response"):
            detail = self._call("GET", f"/v1/jobs/{job.job_id}")
            job._response_secret = None
            raise PrivateInferenceError(detail.get("status_reason") or record["status"],
                                        code=detail.get("error_code") or record["status"])
        self.verify_receipt(job, record)
        return self.open(job, record)
