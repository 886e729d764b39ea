"""Writes on nodes: enrolment tokens, enrolment, heartbeats, approval."""
from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from marketplace.ids import new_secret, secret_hash
from marketplace.models import Miner
from marketplace.shared_cache import cache_add
from nodes.exceptions import EnrollmentRefused, NodeAuthenticationFailed, NodeRequestInvalid
from nodes.gpus import gpu_type_normalize
from nodes.models import EnrollmentToken, Node
from wire.envelope import TransportError
from wire.keys import transport_key_check
from wire.signing import request_signing_message, verify_signature

SIGNATURE_MAX_AGE_SECONDS = 120
NONCE = re.compile(r"[0-9a-f]{16,64}")
# the most jobs a node may say it runs at once; what it really serves is learned (strikes)
MAX_CAPACITY = 10_000


@dataclass(frozen=True)
class IssuedToken:
    token: EnrollmentToken
    secret: str


@dataclass(frozen=True)
class Enrollment:
    node: Node
    node_token: str


def enrollment_token_create(*, miner: Miner) -> IssuedToken:
    secret = new_secret("enroll")
    token = EnrollmentToken.objects.create(miner=miner, prefix=secret[:12], secret_hash=secret_hash(secret))
    return IssuedToken(token=token, secret=secret)


def runnode_command(*, marketplace_url: str, secret: str) -> str:
    """The line a miner pastes on the node's machine to enrol it with this marketplace."""
    return f"python manage.py runnode --port 4001 --marketplace {marketplace_url.rstrip('/')} --enroll-token {secret}"


def enrollment_token_revoke(*, token: EnrollmentToken) -> None:
    EnrollmentToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def signature_check(*, public_key: str, headers, method: str, path: str, body: bytes) -> None:
    """The node signed this very request, recently, with its identity key."""
    timestamp = headers.get("X-Node-Timestamp", "")
    nonce = headers.get("X-Node-Nonce", "")
    signature = headers.get("X-Node-Signature", "")
    if not timestamp.isdigit() or not signature:
        raise NodeAuthenticationFailed("sign the request: X-Node-Timestamp, X-Node-Nonce and X-Node-Signature")
    if not NONCE.fullmatch(nonce):
        raise NodeAuthenticationFailed("X-Node-Nonce must be 16 to 64 hex digits, new for each request "
                                       "(an agent older than this marketplace does not send one: update it)")
    if abs(time.time() - int(timestamp)) > SIGNATURE_MAX_AGE_SECONDS:
        raise NodeAuthenticationFailed("the request signature is too old (check the node's clock)")
    message = request_signing_message(timestamp, method, path, body, nonce=nonce)
    if not verify_signature(public_key, signature, message):
        raise NodeAuthenticationFailed("the request signature does not verify with the node's identity key")
    # remembered for as long as its timestamp is accepted: the same signed request twice is a
    # replay (with the cache down this check is skipped, and the timestamp's window still holds)
    seen = "node-nonce:" + hashlib.sha256(f"{public_key}:{nonce}".encode()).hexdigest()[:40]
    if not cache_add(seen, 1, timeout=2 * SIGNATURE_MAX_AGE_SECONDS + 5):
        raise NodeAuthenticationFailed("this signed request was used before (a replay): sign each request anew")


def _hardware_summary(hardware: list) -> dict:
    gpus = []
    for capability in hardware if isinstance(hardware, list) else []:
        if isinstance(capability, dict) and capability.get("capability_id") == "gpu":
            gpus = [g for g in capability.get("gpu_info", []) if isinstance(g, dict)]
    names = [str(g.get("name", "")) for g in gpus]
    vram = [float(g.get("memory_total", 0)) / 1024 for g in gpus]
    return {
        "gpus": [{"name": n, "vram_gb": round(v, 1)} for n, v in zip(names, vram)],
        "gpu_type": gpu_type_normalize(names[0]) if names else "",
        "gpu_count": len(gpus),
        "vram_gb": round(min(vram), 1) if vram else 0.0,
    }


def transport_keys_check(*, identity_public_key: str, keys: list) -> list[dict]:
    """Every published transport key must be signed by the node's identity key; keep none otherwise."""
    try:
        checked = [transport_key_check(record, identity_public_key) for record in keys]
    except TransportError as exc:
        raise NodeRequestInvalid(f"transport_keys: {exc}", code="invalid_transport_key") from None
    if len({record["key_id"] for record in checked}) != len(checked):
        raise NodeRequestInvalid("transport_keys: every key_id must be different", code="invalid_transport_key")
    return checked


def node_enroll(*, secret: str, spec: dict, headers, path: str, body: bytes) -> Enrollment:
    """Trade a one-time enrolment token for a node id and credentials."""
    public_key = spec["identity_public_key"]
    signature_check(public_key=public_key, headers=headers, method="POST", path=path, body=body)
    transport_keys = transport_keys_check(identity_public_key=public_key, keys=spec.get("transport_keys", []))
    with transaction.atomic():
        try:
            token = EnrollmentToken.objects.select_for_update().select_related("miner").get(secret_hash=secret_hash(secret))
        except EnrollmentToken.DoesNotExist:
            raise EnrollmentRefused("unknown enrolment token") from None
        if token.revoked_at or token.used_at:
            raise EnrollmentRefused("this enrolment token was already used or revoked")
        if token.expires_at <= timezone.now():
            raise EnrollmentRefused("this enrolment token has expired; make a new one")
        node_token = new_secret("nodetok")
        summary = _hardware_summary(spec.get("hardware", []))
        try:
            node = Node.objects.create(
                miner=token.miner,
                name=spec.get("name", "")[:100],
                url=spec.get("url", "")[:300],
                identity_public_key=public_key,
                token_hash=secret_hash(node_token),
                approval=Node.Approval.APPROVED if settings.NODE_AUTO_APPROVE else Node.Approval.PENDING,
                containers=spec["containers"],
                model_map=spec["models"],
                hardware={"capabilities": spec.get("hardware", [])},
                capacity=spec.get("capacity", 4),
                price_per_second_wei=Decimal(spec.get("price_per_second_wei", "0")),
                transport_keys=transport_keys,
                last_heartbeat_at=timezone.now(),
                **summary,
            )
        except IntegrityError:
            raise EnrollmentRefused("a node with this identity key is already enrolled") from None
        EnrollmentToken.objects.filter(pk=token.pk).update(used_at=timezone.now())
    return Enrollment(node=node, node_token=node_token)


def node_from_token(*, headers) -> Node:
    """The node whose token is presented (reads only; writes also need the signature)."""
    authorization = headers.get("Authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NodeAuthenticationFailed("send a node token as 'Authorization: Bearer <token>'")
    node = Node.objects.select_related("miner").filter(token_hash=secret_hash(token.strip())).first()
    if node is None:
        raise NodeAuthenticationFailed("unknown node token")
    return node


def node_authenticate(*, node_id: str, headers, method: str, path: str, body: bytes) -> Node:
    authorization = headers.get("Authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise NodeAuthenticationFailed("send the node token as 'Authorization: Bearer <token>'")
    try:
        node = Node.objects.get(public_id=node_id, token_hash=secret_hash(token.strip()))
    except Node.DoesNotExist:
        raise NodeAuthenticationFailed("unknown node or wrong node token") from None
    signature_check(public_key=node.identity_public_key, headers=headers, method=method, path=path, body=body)
    return node


MAX_REASON_CHARS = 300


def _unavailable_check(node: Node, unavailable) -> dict[str, str]:
    """The models the node says it cannot run, with why: only models it advertises count."""
    if not isinstance(unavailable, dict) or not all(isinstance(v, str) for v in unavailable.values()):
        raise NodeRequestInvalid("unavailable must map model names to reasons")
    return {model: reason[:MAX_REASON_CHARS] for model, reason in unavailable.items() if model in node.model_map}


def node_heartbeat(*, node: Node, report: dict) -> Node:
    fields = {"last_heartbeat_at": timezone.now(), "last_heartbeat": report}
    if "capacity" in report:
        if isinstance(report["capacity"], bool) or not isinstance(report["capacity"], int) \
                or not 1 <= report["capacity"] <= MAX_CAPACITY:
            raise NodeRequestInvalid(f"capacity must be a whole number from 1 to {MAX_CAPACITY}")
        fields["capacity"] = report["capacity"]
    if "unavailable" in report:
        fields["unavailable_models"] = _unavailable_check(node, report.pop("unavailable"))
    if "transport_keys" in report:
        fields["transport_keys"] = transport_keys_check(
            identity_public_key=node.identity_public_key, keys=report.pop("transport_keys")
        )
    Node.objects.filter(pk=node.pk).update(**fields)
    for name, value in fields.items():
        setattr(node, name, value)
    return node


def node_attach(*, node: Node, channel_name: str) -> str:
    """The node's socket opened on ``channel_name``; the channel it replaces ("" if none)."""
    previous = Node.objects.filter(pk=node.pk).values_list("channel_name", flat=True).first() or ""
    now = timezone.now()
    Node.objects.filter(pk=node.pk).update(channel_name=channel_name, connected_at=now, last_heartbeat_at=now)
    return previous if previous != channel_name else ""


def node_detach(*, node_pk: int, channel_name: str) -> None:
    """The socket on ``channel_name`` closed; a newer socket of the same node is left alone."""
    Node.objects.filter(pk=node_pk, channel_name=channel_name).update(channel_name="")


GPU_STAT_FIELDS = ("index", "utilization_percent", "memory_used_mib", "memory_total_mib", "temperature_c")
MAX_GPUS = 64


def gpu_stats_check(gpus) -> list[dict]:
    """What a heartbeat says of each GPU, kept to whole numbers (or None) under the known names."""
    if not isinstance(gpus, list):
        raise NodeRequestInvalid("gpus must be a list")
    checked = []
    for gpu in gpus[:MAX_GPUS]:
        if not isinstance(gpu, dict):
            raise NodeRequestInvalid("each of gpus must be an object")
        checked.append({name: gpu[name] if isinstance(gpu.get(name), int) and not isinstance(gpu.get(name), bool)
                        else None for name in GPU_STAT_FIELDS})
    return checked


def node_beat(*, node_pk: int, running: list[list] | None = None, gpus: list[dict] | None = None) -> None:
    """A heartbeat on the socket, with the attempts the node says it runs (and, where it reports
    them, its GPUs' figures): one statement."""
    fields = {"last_heartbeat_at": timezone.now(), "running_attempts": running or []}
    if gpus is not None:
        fields["gpu_stats"] = gpus
    Node.objects.filter(pk=node_pk).update(**fields)


# far above any real price, and far below what a wei column holds
MAX_PRICE_PER_SECOND_WEI = 10**30


def node_price_set(*, node: Node, price_wei: int) -> None:
    """The price the node's miner asks per GPU-second; jobs given to it from now on are charged at
    it (within the pricing policy's bounds). Jobs it already runs keep the rate they were given."""
    if not 0 <= price_wei <= MAX_PRICE_PER_SECOND_WEI:
        raise ValueError(f"a price is a whole number of wei from 0 to {MAX_PRICE_PER_SECOND_WEI}")
    Node.objects.filter(pk=node.pk).update(price_per_second_wei=price_wei)


def node_set_approval(*, node: Node, approval: str) -> None:
    Node.objects.filter(pk=node.pk).update(approval=approval)
