"""Signed node transport keys and private receipts: what anyone can check with a node's identity key.

A transport key is published as ``{key_id, public_key_x25519, not_before, not_after,
signature}``. The signature is the node's Ed25519 identity signature over
``CANON({"v": KEY_STATEMENT, key_id, public_key_x25519, not_before, not_after})``
(times as Unix seconds in decimal strings), so neither the marketplace nor anyone on
the way can slip its own key into a node's key set, or stretch a key's life.
"""
from __future__ import annotations

import time

from wire.envelope import TransportError, b64u_decode, canonical
from wire.signing import RECEIPT_FIELDS, receipt_hash, verify_signature

KEY_STATEMENT = "b3iq-transport-key-v1"
KEY_FIELDS = ("key_id", "public_key_x25519", "not_before", "not_after", "signature")
# a private job's receipt is every job's receipt, with the private transport's fields filled
PRIVATE_RECEIPT_FIELDS = RECEIPT_FIELDS


def key_statement(*, key_id: str, public_key_x25519: str, not_before: str, not_after: str) -> bytes:
    """The bytes a node signs to vouch for one of its transport keys."""
    return canonical(
        {
            "v": KEY_STATEMENT,
            "key_id": key_id,
            "public_key_x25519": public_key_x25519,
            "not_before": not_before,
            "not_after": not_after,
        }
    )


def transport_key_check(record, identity_public_key: str) -> dict[str, str]:
    """The record, if it is a well-formed key signed by this identity; else ``TransportError``."""
    if not isinstance(record, dict) or set(record) != set(KEY_FIELDS):
        raise TransportError(f"a transport key has exactly the fields {', '.join(KEY_FIELDS)}")
    if not all(isinstance(record[name], str) for name in KEY_FIELDS):
        raise TransportError("every field of a transport key is a string")
    if not 1 <= len(record["key_id"]) <= 128:
        raise TransportError("key_id must be 1 to 128 characters")
    if len(b64u_decode(record["public_key_x25519"], "public_key_x25519")) != 32:
        raise TransportError("public_key_x25519 must be 32 bytes")
    if not (record["not_before"].isdigit() and record["not_after"].isdigit()):
        raise TransportError("not_before and not_after are Unix seconds, as decimal strings")
    if int(record["not_after"]) <= int(record["not_before"]):
        raise TransportError("a transport key must end after it begins")
    statement = key_statement(**{name: record[name] for name in KEY_FIELDS if name != "signature"})
    if not verify_signature(identity_public_key, record["signature"], statement):
        raise TransportError("the transport key's signature does not verify with the node's identity key",
                             code="invalid_key_signature")
    return dict(record)


def transport_key_usable(record: dict[str, str], now: float | None = None) -> bool:
    now = time.time() if now is None else now
    return int(record["not_before"]) <= now < int(record["not_after"])


def transport_key_current(records: list[dict[str, str]], now: float | None = None) -> dict[str, str] | None:
    """The key to seal to now: the newest one inside its window.

    Two keys may begin in the same second (a rotation on demand): the one that was
    rotated out ends sooner, at the end of its grace, so the later end is the newer key.
    """
    usable = [r for r in records if transport_key_usable(r, now)]
    return max(usable, key=lambda r: (int(r["not_before"]), int(r["not_after"]))) if usable else None


def private_receipt_check(receipt, identity_public_key: str, expected: dict[str, str]) -> dict[str, str]:
    """Check a signed private receipt: its fields, its hash, its signature, and what it must say.

    ``receipt`` is ``{body, hash, signature, signer}``; ``expected`` maps receipt fields
    to the values the checker computed on its own (the job, the node, the ciphertext
    hashes). Raises ``TransportError`` with code ``receipt_hash_mismatch`` when the hash
    is not the hash of the body, ``invalid_receipt`` for anything else.
    """
    if not isinstance(receipt, dict) or not isinstance(receipt.get("body"), dict):
        raise TransportError("the receipt is missing", code="invalid_receipt")
    body = receipt["body"]
    if set(body) != set(PRIVATE_RECEIPT_FIELDS) or not all(isinstance(v, str) for v in body.values()):
        raise TransportError("the receipt does not have exactly the private receipt's string fields",
                             code="invalid_receipt")
    if receipt.get("hash") != receipt_hash(body):
        raise TransportError("receipt_hash is not the SHA-256 of the receipt", code="receipt_hash_mismatch")
    message = canonical(body)
    if not verify_signature(identity_public_key, str(receipt.get("signature", "")), message):
        raise TransportError("the receipt's signature does not verify with the node's identity key",
                             code="invalid_receipt")
    wrong = sorted(name for name, value in expected.items() if body.get(name) != value)
    if wrong:
        raise TransportError(f"the receipt does not match the job: {', '.join(wrong)}", code="invalid_receipt")
    return body
