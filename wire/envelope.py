"""b3iq-private-transport-v1: the envelope of a private job, byte for byte as PRIVATE_TRANSPORT.md fixes it.

The customer seals a request to one node's X25519 transport key; only that node can
open it, and only the customer can open the node's sealed response. The context
(job, customer, node, model, expiry) is bound into the AEAD's associated data and
into every derived key, so a ciphertext cannot be moved to another job or node.
Parsing is strict: exact version and algorithm, base64url only, 32-byte keys,
12-byte nonces, no unknown fields.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from wire import encoding
from wire.encoding import b64u

VERSION = "b3iq-private-transport-v1"
ALGORITHM = "x25519-hkdf-sha256-chacha20poly1305"
ENVELOPE_FIELDS = ("version", "key_id", "algorithm", "client_public_key_x25519", "nonce", "ciphertext", "aad_hash")
CONTEXT_FIELDS = ("job_id", "customer_id", "node_id", "model_id", "expires_at")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class TransportError(ValueError):
    """The envelope is malformed, does not open, or does not belong to this context."""

    def __init__(self, message: str, code: str = "invalid_encrypted_request") -> None:
        super().__init__(message)
        self.code = code


def b64u_decode(text: str, name: str) -> bytes:
    """Decode unpadded base64url, and nothing else; the envelope's error names the field."""
    try:
        return encoding.b64u_decode(text, name)
    except ValueError as exc:
        raise TransportError(str(exc)) from None


def canonical(document: dict[str, str]) -> bytes:
    """CANON, with the envelope's error for a value that is not a string."""
    try:
        return encoding.canonical(document)
    except ValueError:
        raise TransportError("every context value must be a string") from None


def _lp(value: bytes | str) -> bytes:
    data = value.encode("utf-8") if isinstance(value, str) else value
    return len(data).to_bytes(2, "big") + data


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


@dataclass(frozen=True)
class Context:
    job_id: str
    customer_id: str
    node_id: str
    model_id: str
    expires_at: str

    def as_dict(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in CONTEXT_FIELDS}


def request_aad(context: Context) -> bytes:
    return canonical({"v": VERSION, "alg": ALGORITHM, "dir": "request", **context.as_dict()})


def response_aad(context: Context, request_aad_hash: str) -> bytes:
    return canonical(
        {"v": VERSION, "alg": ALGORITHM, "dir": "response", **context.as_dict(), "request_aad_hash": request_aad_hash}
    )


def _transcript(key_id: str, enc: bytes, node_public: bytes, aad_hash: bytes) -> bytes:
    return _lp(VERSION) + _lp(ALGORITHM) + _lp(key_id) + _lp(enc) + _lp(node_public) + _lp(aad_hash)


def _shared_secret(private: X25519PrivateKey, public: bytes) -> bytes:
    try:
        secret = private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:  # OpenSSL itself refuses a low-order point, whose secret is all zeros
        raise TransportError("the key exchange gave an all-zero secret") from None
    if secret == bytes(32):
        raise TransportError("the key exchange gave an all-zero secret")
    return secret


@dataclass(frozen=True)
class SealedRequest:
    envelope: dict[str, str]
    response_secret: bytes  # the client keeps this until the response is opened, then drops it


def seal_request(*, plaintext: bytes, context: Context, key_id: str, node_public_key: bytes,
                 ephemeral: X25519PrivateKey | None = None, nonce: bytes | None = None) -> SealedRequest:
    """Client side. ``ephemeral`` and ``nonce`` are only for reproducing a test vector."""
    if len(node_public_key) != 32:
        raise TransportError("the node's public key must be 32 bytes")
    ephemeral = ephemeral or X25519PrivateKey.generate()
    nonce = nonce or os.urandom(12)
    enc = ephemeral.public_key().public_bytes_raw()
    aad = request_aad(context)
    aad_hash = hashlib.sha256(aad).digest()
    shared = _shared_secret(ephemeral, node_public_key)
    transcript = _transcript(key_id, enc, node_public_key, aad_hash)
    key = _hkdf(shared, VERSION.encode(), b"req\x00" + transcript)
    response_secret = _hkdf(shared, VERSION.encode(), b"resp-secret\x00" + transcript)
    ciphertext = ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad)
    envelope = {
        "version": VERSION,
        "key_id": key_id,
        "algorithm": ALGORITHM,
        "client_public_key_x25519": b64u(enc),
        "nonce": b64u(nonce),
        "ciphertext": b64u(ciphertext),
        "aad_hash": aad_hash.hex(),
    }
    return SealedRequest(envelope=envelope, response_secret=response_secret)


@dataclass(frozen=True)
class ParsedEnvelope:
    key_id: str
    client_public_key: bytes
    nonce: bytes
    ciphertext: bytes
    aad_hash: str | None


def parse_envelope(envelope) -> ParsedEnvelope:
    """Strict structural checks, before anything is reserved or decrypted."""
    if not isinstance(envelope, dict):
        raise TransportError("the envelope must be a JSON object")
    unknown = set(envelope) - set(ENVELOPE_FIELDS)
    if unknown:
        raise TransportError(f"unknown envelope fields: {', '.join(sorted(unknown))}")
    missing = {"version", "key_id", "algorithm", "client_public_key_x25519", "nonce", "ciphertext"} - set(envelope)
    if missing:
        raise TransportError(f"missing envelope fields: {', '.join(sorted(missing))}")
    if envelope["version"] != VERSION:
        raise TransportError(f"version must be {VERSION}")
    if envelope["algorithm"] != ALGORITHM:
        raise TransportError(f"algorithm must be {ALGORITHM}")
    key_id = envelope["key_id"]
    if not isinstance(key_id, str) or not 1 <= len(key_id) <= 128 or not key_id.isprintable() or not key_id.isascii():
        raise TransportError("key_id must be 1 to 128 printable ASCII characters")
    client_key = b64u_decode(envelope["client_public_key_x25519"], "client_public_key_x25519")
    if len(client_key) != 32:
        raise TransportError("client_public_key_x25519 must be 32 bytes")
    nonce = b64u_decode(envelope["nonce"], "nonce")
    if len(nonce) != 12:
        raise TransportError("nonce must be 12 bytes")
    ciphertext = b64u_decode(envelope["ciphertext"], "ciphertext")
    if len(ciphertext) < 16:
        raise TransportError("ciphertext is shorter than its authentication tag")
    aad_hash = envelope.get("aad_hash")
    if aad_hash is not None and (not isinstance(aad_hash, str) or not _HEX64.match(aad_hash)):
        raise TransportError("aad_hash must be 64 lowercase hex digits")
    return ParsedEnvelope(envelope["key_id"], client_key, nonce, ciphertext, aad_hash)


@dataclass(frozen=True)
class OpenedRequest:
    plaintext: bytes
    request_aad_hash: str
    response_secret: bytes
    client_public_key: bytes


def open_request(*, envelope, context: Context, node_private_key: X25519PrivateKey) -> OpenedRequest:
    """Node side: the context is rebuilt from the job the node was handed, never from the envelope."""
    parsed = parse_envelope(envelope)
    aad = request_aad(context)
    aad_hash = hashlib.sha256(aad).digest()
    if parsed.aad_hash is not None and parsed.aad_hash != aad_hash.hex():
        raise TransportError("aad_hash does not match this job's context (job, customer, node, model, expiry)")
    node_public = node_private_key.public_key().public_bytes_raw()
    shared = _shared_secret(node_private_key, parsed.client_public_key)
    transcript = _transcript(parsed.key_id, parsed.client_public_key, node_public, aad_hash)
    key = _hkdf(shared, VERSION.encode(), b"req\x00" + transcript)
    try:
        plaintext = ChaCha20Poly1305(key).decrypt(parsed.nonce, parsed.ciphertext, aad)
    except InvalidTag:
        raise TransportError("the request does not open with this key and context") from None
    return OpenedRequest(
        plaintext=plaintext,
        request_aad_hash=aad_hash.hex(),
        response_secret=_hkdf(shared, VERSION.encode(), b"resp-secret\x00" + transcript),
        client_public_key=parsed.client_public_key,
    )


def seal_response(*, plaintext: bytes, context: Context, request_envelope: dict, request_aad_hash: str,
                  response_secret: bytes, nonce: bytes | None = None) -> dict[str, str]:
    nonce = nonce or os.urandom(12)
    aad = response_aad(context, request_aad_hash)
    key = _hkdf(response_secret, nonce, b"resp\x00" + hashlib.sha256(aad).digest())
    return {
        "version": VERSION,
        "key_id": request_envelope["key_id"],
        "algorithm": ALGORITHM,
        "client_public_key_x25519": request_envelope["client_public_key_x25519"],
        "nonce": b64u(nonce),
        "ciphertext": b64u(ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad)),
        "aad_hash": hashlib.sha256(aad).hexdigest(),
    }


def open_response(*, envelope, context: Context, request_aad_hash: str, response_secret: bytes) -> bytes:
    """Client side: only the holder of the response secret of this very request can open it."""
    parsed = parse_envelope(envelope)
    aad = response_aad(context, request_aad_hash)
    if parsed.aad_hash is not None and parsed.aad_hash != hashlib.sha256(aad).hexdigest():
        raise TransportError("the response's aad_hash does not match this job")
    key = _hkdf(response_secret, parsed.nonce, b"resp\x00" + hashlib.sha256(aad).digest())
    try:
        return ChaCha20Poly1305(key).decrypt(parsed.nonce, parsed.ciphertext, aad)
    except InvalidTag:
        raise TransportError("the response does not open with this request's secret") from None
