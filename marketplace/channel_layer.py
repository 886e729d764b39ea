"""The in-memory channel layer of the embedded default, made safe to call from worker threads.

Channels' InMemoryChannelLayer keeps asyncio queues that belong to the event loop
of the web server; the in-process Dramatiq workers publish from their own
threads (each with its own loop through ``async_to_sync``). Those calls are handed
to the server's loop, so a waiting WebSocket or SSE client is woken correctly.
"""
from __future__ import annotations

import asyncio

from channels.layers import InMemoryChannelLayer


class ThreadSafeInMemoryChannelLayer(InMemoryChannelLayer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._home: asyncio.AbstractEventLoop | None = None

    def _remember_home(self) -> None:
        if self._home is None or self._home.is_closed():
            self._home = asyncio.get_running_loop()

    async def _on_home(self, coroutine):
        loop = asyncio.get_running_loop()
        if self._home is None or self._home is loop or self._home.is_closed() or not self._home.is_running():
            return await coroutine
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self._home))

    async def new_channel(self, prefix="specific."):
        self._remember_home()
        return await super().new_channel(prefix)

    async def receive(self, channel):
        self._remember_home()
        return await super().receive(channel)

    async def send(self, channel, message):
        return await self._on_home(super().send(channel, message))

    async def group_send(self, group, message):
        # nobody listening (the common case: no dashboard open on this customer): no trip to
        # the server's loop. A listener joins before it reads its snapshot, so nothing it
        # needs can be skipped this way.
        if not self.groups.get(group):
            return None
        return await self._on_home(super().group_send(group, message))

    async def group_add(self, group, channel):
        return await self._on_home(super().group_add(group, channel))

    async def group_discard(self, group, channel):
        return await self._on_home(super().group_discard(group, channel))
