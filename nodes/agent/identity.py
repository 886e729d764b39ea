"""The node's Ed25519 identity key and the receipts it signs.

The key is made on first start and kept on disk, readable by its owner only:
it is what the marketplace enrols, and what every receipt is checked against.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from privacy.keys import PRIVATE_RECEIPT_FIELDS

log = logging.getLogger(__name__)

IDENTITY_FILE = "identity_ed25519.pem"

# a receipt has the private transport's fields for every job (empty where a job is not private)
RECEIPT_FIELDS = PRIVATE_RECEIPT_FIELDS


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


def canonical_json(document: dict[str, str]) -> bytes:
    """CANON of PRIVATE_TRANSPORT.md: sorted keys, no spaces, ASCII only."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class SignedReceipt:
    body: dict[str, str]
    hash: str
    signature: str
    signer: str

    def as_dict(self) -> dict[str, object]:
        return {"body": self.body, "hash": self.hash, "signature": self.signature, "signer": self.signer}


class Identity:
    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self.public_key_bytes = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.public_key_b64u = b64u(self.public_key_bytes)

    @property
    def default_node_id(self) -> str:
        """A stable id derived from the key, used until the marketplace assigns one."""
        return "node_" + sha256_hex(self.public_key_bytes)[:16]

    def sign(self, message: bytes) -> bytes:
        return self._private_key.sign(message)

    def sign_request(self, method: str, path: str, body: bytes) -> dict[str, str]:
        """Headers that prove a request to the marketplace comes from this node, now."""
        timestamp = str(int(time.time()))
        signature = self.sign(request_signing_message(timestamp, method, path, body))
        return {"X-Node-Timestamp": timestamp, "X-Node-Signature": b64u(signature)}

    def sign_receipt(self, fields: dict[str, str]) -> SignedReceipt:
        missing = set(RECEIPT_FIELDS) - set(fields)
        extra = set(fields) - set(RECEIPT_FIELDS)
        if missing or extra or not all(isinstance(v, str) for v in fields.values()):
            raise ValueError(f"receipt fields are wrong: missing={sorted(missing)} extra={sorted(extra)}")
        message = canonical_json(fields)
        return SignedReceipt(
            body=dict(fields),
            hash=sha256_hex(message),
            signature=b64u(self.sign(message)),
            signer=self.public_key_b64u,
        )


def request_signing_message(timestamp: str, method: str, path: str, body: bytes) -> bytes:
    """What a node signs for each request it makes to the marketplace (enrol, heartbeat)."""
    return f"{timestamp}\n{method.upper()}\n{path}\n{hashlib.sha256(body).hexdigest()}".encode()


def verify_signature(public_key_b64u: str, signature_b64u: str, message: bytes) -> bool:
    try:
        key = Ed25519PublicKey.from_public_bytes(b64u_decode(public_key_b64u))
        key.verify(b64u_decode(signature_b64u), message)
    except (InvalidSignature, TypeError, ValueError):
        return False
    return True


def verify_receipt(receipt: dict, public_key_b64u: str) -> bool:
    """Check a receipt as a third party would: the hash and the signature over CANON(body)."""
    try:
        body = receipt["body"]
        message = canonical_json(body)
        if sha256_hex(message) != receipt["hash"]:
            return False
    except (KeyError, TypeError, ValueError):
        return False
    return verify_signature(public_key_b64u, receipt.get("signature", ""), message)


def load_or_create_identity(state_dir: Path) -> Identity:
    """Load the identity key from ``state_dir``, making it (mode 600) on first start."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / IDENTITY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("identity key %s was readable by others (mode %o); tightening to 600", path, mode)
            path.chmod(0o600)
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        return Identity(key)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    log.info("made a new node identity key at %s", path)
    return Identity(key)
