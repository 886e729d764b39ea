"""Containers that are HTTP services taking Infernet's ``POST /service_output``.

One keep-alive connection pool per container: unlike Infernet, the agent does not
open a new connection for every job.
"""
from __future__ import annotations

import json
from typing import Any

import aiohttp

from nodes.agent.errors import ContainerFailure
from nodes.agent.runtimes.base import Chunk, ContainerCall, EventSink, Runtime
from wire.bounded_json import loads_bounded

# Infernet's JobLocation
OFFCHAIN = 1
STREAM = 2
JSON_HEADERS = {"Content-Type": "application/json"}


class HttpServiceRuntime(Runtime):
    def base_url(self) -> str:
        return self.container.url.rstrip("/")

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.container.concurrency, force_close=False)
        self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))

    async def stop(self) -> None:
        await self._session.close()

    async def run(self, call: ContainerCall, on_event: EventSink) -> Any:
        body = {
            "source": OFFCHAIN,
            "destination": STREAM if call.stream else OFFCHAIN,
            "data": call.data,
            "requires_proof": call.requires_proof,
        }
        url = f"{self.base_url()}/service_output"
        try:
            payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
            async with self._session.post(url, data=payload, headers=JSON_HEADERS) as response:
                if response.status != 200:
                    text = (await response.text(errors="replace"))[:500]
                    raise ContainerFailure(f"container answered HTTP {response.status}: {text}")
                if not call.stream:
                    raw = await response.read()
                    try:
                        return loads_bounded(raw, max_bytes=len(raw), storable=False)
                    except ValueError:
                        preview = raw[:80].decode("utf-8", errors="replace")
                        raise ContainerFailure(f"container output is not valid JSON: {preview!r}") from None
                streamed = bytearray()
                async for chunk in response.content.iter_any():
                    streamed += chunk
                    on_event(Chunk(bytes(chunk)))
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise ContainerFailure(
                f"container {self.container.id} is unreachable or died mid-job: {type(exc).__name__}: {exc}"
            ) from None
        text = streamed.decode("utf-8", errors="replace")
        try:
            return loads_bounded(text, max_bytes=len(text), storable=False)
        except ValueError:
            return text
