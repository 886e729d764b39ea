"""The node's Ed25519 identity key: made on first start, kept on disk readable by its owner only.

It is what the marketplace enrols, and what every receipt is checked against. The
formats it signs are ``wire.signing``'s.
"""
from __future__ import annotations

import logging
import os
import secrets
import stat
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from wire.encoding import b64u, sha256_hex
from wire.signing import SignedReceipt, receipt_sign, request_signing_message

log = logging.getLogger(__name__)

IDENTITY_FILE = "identity_ed25519.pem"


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
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        signature = self.sign(request_signing_message(timestamp, method, path, body, nonce=nonce))
        return {"X-Node-Timestamp": timestamp, "X-Node-Nonce": nonce, "X-Node-Signature": b64u(signature)}

    def sign_receipt(self, fields: dict[str, str]) -> SignedReceipt:
        return receipt_sign(fields, sign=self.sign, signer=self.public_key_b64u)


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
