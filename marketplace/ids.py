"""Public identifiers and secrets: prefixed, random, and never guessable."""
from __future__ import annotations

import hashlib
import secrets


def public_id(prefix: str, nbytes: int = 12) -> str:
    return f"{prefix}_{secrets.token_hex(nbytes)}"


def new_secret(prefix: str) -> str:
    """A bearer secret. It is shown once and stored only as ``secret_hash``."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def secret_hash(secret: str) -> str:
    # secrets are 256 random bits, so a fast hash is enough: nothing to brute-force
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()
