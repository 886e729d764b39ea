"""What a node signs with its Ed25519 identity key: its requests to the marketplace, and a
receipt for every job it runs. Anyone holding the node's public key checks either."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from wire.encoding import b64u, b64u_decode, canonical, sha256_hex

# a receipt has the private transport's fields for every job (empty where a job is not private)
RECEIPT_FIELDS = (
    "job_id",
    "node_id",
    "model_id",
    "key_id",
    "request_aad_hash",
    "request_ciphertext_sha256",
    "response_aad_hash",
    "response_ciphertext_sha256",
    "status",
    "started_at",
    "completed_at",
    "duration_ms",
)


def request_signing_message(timestamp: str, method: str, path: str, body: bytes, *, nonce: str) -> bytes:
    """What a node signs for each request it makes to the marketplace (enrol, the socket's upgrade).
    The nonce, new for every request, lets the marketplace refuse the same signed request twice."""
    return f"{timestamp}\n{nonce}\n{method.upper()}\n{path}\n{hashlib.sha256(body).hexdigest()}".encode()


def verify_signature(public_key_b64u: str, signature_b64u: str, message: bytes) -> bool:
    try:
        key = Ed25519PublicKey.from_public_bytes(b64u_decode(public_key_b64u, "public key"))
        key.verify(b64u_decode(signature_b64u, "signature"), message)
    except (InvalidSignature, TypeError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class SignedReceipt:
    body: dict[str, str]
    hash: str
    signature: str
    signer: str

    def as_dict(self) -> dict[str, object]:
        return {"body": self.body, "hash": self.hash, "signature": self.signature, "signer": self.signer}


def receipt_hash(body: dict[str, str]) -> str:
    """``receipt_hash = hex(SHA256(CANON(receipt)))``."""
    return sha256_hex(canonical(body))


def receipt_sign(fields: dict[str, str], *, sign: Callable[[bytes], bytes], signer: str) -> SignedReceipt:
    """A receipt over exactly ``RECEIPT_FIELDS``, all strings; ``sign`` holds the private key."""
    missing = set(RECEIPT_FIELDS) - set(fields)
    extra = set(fields) - set(RECEIPT_FIELDS)
    if missing or extra or not all(isinstance(v, str) for v in fields.values()):
        raise ValueError(f"receipt fields are wrong: missing={sorted(missing)} extra={sorted(extra)}")
    message = canonical(fields)
    return SignedReceipt(body=dict(fields), hash=sha256_hex(message), signature=b64u(sign(message)), signer=signer)


def verify_receipt(receipt: dict, public_key_b64u: str) -> bool:
    """Check a receipt as a third party would: the hash and the signature over CANON(body)."""
    try:
        message = canonical(receipt["body"])
        if sha256_hex(message) != receipt["hash"]:
            return False
    except (KeyError, TypeError, ValueError):
        return False
    return verify_signature(public_key_b64u, receipt.get("signature", ""), message)
