"""The encodings every format here is built from: base64url, CANON, receipt JSON bytes, SHA-256."""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

_B64U_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


def b64u(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: str, name: str = "value") -> bytes:
    """Decode unpadded base64url, and nothing else; ``ValueError`` naming ``name`` otherwise."""
    if not isinstance(text, str) or not text.isascii() or len(text) % 4 == 1:
        raise ValueError(f"{name} is not base64url")
    data = text.encode("ascii")
    if data.translate(None, _B64U_ALPHABET):  # anything left is not in the base64url alphabet
        raise ValueError(f"{name} is not base64url")
    try:
        return binascii.a2b_base64(data.translate(_TO_STANDARD) + b"=" * (-len(data) % 4))
    except binascii.Error:
        raise ValueError(f"{name} is not base64url") from None


def canonical(document: dict[str, str]) -> bytes:
    """CANON of PRIVATE_TRANSPORT.md: sorted keys, "," and ":" separators, ASCII only, every
    value a string (what is signed must have one spelling); ``ValueError`` otherwise."""
    if not isinstance(document, dict) or not all(isinstance(v, str) for v in document.values()):
        raise ValueError("a signed document is an object of strings")
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def json_bytes(value: Any) -> bytes:
    """The bytes a receipt hashes for a JSON value: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
