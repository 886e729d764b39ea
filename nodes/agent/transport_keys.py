"""The node's X25519 transport keys: made, signed, published, rotated, destroyed.

Private keys live in this process's memory only, never on disk and never sent
anywhere: a restart starts a fresh key (requests sealed to the old one fail with
``unknown_key_id`` and their customers are refunded). Each key opens requests
from ``not_before`` until ``not_after``; a rotation gives the current key a new
``not_after`` a grace period away, so requests sealed just before it still open,
and once that passes the key and its replay cache are dropped.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from nodes.agent.identity import Identity
from wire.encoding import b64u
from wire.envelope import Context, OpenedRequest, TransportError, open_request, parse_envelope
from wire.keys import key_statement

# rotations on demand in quick succession keep at most this many keys (the oldest go first)
MAX_KEYS = 8


@dataclass
class _Key:
    key_id: str
    private: X25519PrivateKey | None
    not_before: int
    not_after: int
    record: dict[str, str]
    # (key_id, client key) of every request this key opened: a second open is a replay
    opened: set[bytes] = field(default_factory=set)


class TransportKeyring:
    def __init__(self, identity: Identity, *, rotation_seconds: float, grace_seconds: float, clock=time.time) -> None:
        if rotation_seconds <= 0 or grace_seconds < 0:
            raise ValueError("rotation_seconds must be positive and grace_seconds not negative")
        self._identity = identity
        self._rotation = int(rotation_seconds)
        self._grace = int(grace_seconds)
        self._clock = clock
        self._keys: dict[str, _Key] = {}
        self._current: _Key | None = None
        self.rotate()

    def _sign(self, key: _Key) -> None:
        public = b64u(key.private.public_key().public_bytes_raw())
        fields = {
            "key_id": key.key_id,
            "public_key_x25519": public,
            "not_before": str(key.not_before),
            "not_after": str(key.not_after),
        }
        key.record = {**fields, "signature": b64u(self._identity.sign(key_statement(**fields)))}

    def rotate(self) -> str:
        """Start a new key now; the current one keeps opening requests for the grace period."""
        now = int(self._clock())
        if self._current is not None and self._current.not_after > now + self._grace:
            self._current.not_after = now + self._grace
            self._sign(self._current)
        key = _Key(
            key_id="tk_" + secrets.token_hex(8),
            private=X25519PrivateKey.generate(),
            not_before=now,
            not_after=now + self._rotation + self._grace,
            record={},
        )
        self._sign(key)
        self._keys[key.key_id] = key
        self._current = key
        self.expire()
        for oldest in sorted(self._keys.values(), key=lambda k: (k.not_before, k.not_after))[:-MAX_KEYS]:
            self._destroy(oldest.key_id)
        return key.key_id

    def tick(self) -> bool:
        """Rotate on schedule and destroy expired keys; True if the published set changed."""
        before = set(self._keys)
        if self._current is not None and self._clock() >= self._current.not_before + self._rotation:
            self.rotate()
        self.expire()
        return set(self._keys) != before

    def expire(self) -> None:
        now = self._clock()
        for key_id in [k for k, key in self._keys.items() if key.not_after <= now]:
            self._destroy(key_id)

    def _destroy(self, key_id: str) -> None:
        key = self._keys.pop(key_id)
        key.private = None  # the last reference: OpenSSL frees (and clears) the key
        key.opened.clear()

    @property
    def current_key_id(self) -> str:
        return self._current.key_id

    def published(self) -> list[dict[str, str]]:
        """The signed public records of every key that still opens requests, newest last."""
        self.expire()
        return [dict(k.record) for k in sorted(self._keys.values(), key=lambda k: k.not_before)]

    def open(self, envelope, context: Context) -> OpenedRequest:
        """Open a request sealed to one of these keys, at most once."""
        parsed = parse_envelope(envelope)
        self.expire()
        key = self._keys.get(parsed.key_id)
        if key is None or key.private is None or self._clock() < key.not_before:
            raise TransportError(f"this node has no transport key {parsed.key_id}", code="unknown_key_id")
        if parsed.client_public_key in key.opened:
            raise TransportError("this request was already opened once; it cannot be replayed",
                                 code="replayed_request")
        opened = open_request(envelope=envelope, context=context, node_private_key=key.private)
        key.opened.add(parsed.client_public_key)  # only after it opened: garbage cannot fill the cache
        return opened
