"""What every Channels consumer of ours shares."""
from __future__ import annotations

from channels.consumer import get_handler_name


class DirectDispatch:
    """Hands each ASGI message to its handler without Channels' database hop first.

    Channels closes stale database connections before every message, by a call into the
    one thread that every thread-sensitive sync call shares. Consumers of ours never touch
    the database on the event loop: each read and write runs in ``database_sync_to_async``,
    which closes stale connections around itself. The hop was pure cost, and queued
    behind any other sync call: two per job on a node's socket alone.
    """

    async def dispatch(self, message):
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)
