"""A scripted node on a real socket: it says what a test tells it to, and nothing else.

For the hostile and silent peers a real agent would never be: a node that takes a
job and never answers, one that sends results for jobs it was not given, one whose
receipt does not parse.
"""
from __future__ import annotations

import json
import secrets

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.sync.client import connect

from marketplace.ids import secret_hash
from nodes.agent.identity import Identity
from nodes.models import Node
from tests import factories
from wire.frames import SOCKET_PATH


class FakeNode:
    def __init__(self, live_url: str, *, models=("echo",), capacity: int = 4) -> None:
        self.identity = Identity(Ed25519PrivateKey.generate())
        self.token = secrets.token_urlsafe(16)
        self.node = factories.node(models=models, capacity=capacity, online=False,
                                   identity_public_key=self.identity.public_key_b64u)
        Node.objects.filter(pk=self.node.pk).update(token_hash=secret_hash(self.token))
        self.url = "ws://" + live_url.removeprefix("http://") + SOCKET_PATH
        self.ws = None

    def headers(self, token: str | None = None) -> dict:
        return {"Authorization": f"Bearer {token or self.token}", "X-Node-Id": self.node.public_id,
                **self.identity.sign_request("GET", SOCKET_PATH, b"")}

    def connect(self, **hello) -> dict:
        self.ws = connect(self.url, additional_headers=self.headers(), open_timeout=10)
        welcome = self.receive()
        self.send({"type": "hello", "capacity": self.node.capacity, "running": [], "results": [], **hello})
        return welcome

    def send(self, frame: dict) -> None:
        self.ws.send(json.dumps(frame))

    def receive(self, timeout: float = 10) -> dict:
        return json.loads(self.ws.recv(timeout=timeout))

    def receive_type(self, kind: str, timeout: float = 10) -> dict:
        while True:
            frame = self.receive(timeout)
            if frame["type"] == kind:
                return frame

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
