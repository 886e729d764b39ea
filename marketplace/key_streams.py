"""The live streams (SSE and WebSocket) open on each API key, in this process.

Two rules ride on this count. A key holds at most ``MAX_STREAMS_PER_KEY`` streams in one
web process, so one customer cannot take every stream a process can serve. And revoking
a key ends its open streams within a moment: ``api_key_revoke`` publishes the key on the
live bus, and each loop that holds streams listens to that one topic (one subscription
per loop, not one per stream) and ends the key's streams. The listener starts before a
stream authenticates, so a key revoked in between is caught too; a listener told that it
may have missed messages asks the database which of its keys are revoked.
"""
from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass, field

from channels.db import database_sync_to_async
from django.conf import settings

from marketplace import live_bus

log = logging.getLogger(__name__)

REVOKED_TOPIC = "api-keys.revoked"
# a revocation heard this long ago still ends a stream that registers after it
REMEMBER_SECONDS = 60.0


class TooManyStreams(Exception):
    """The key holds its cap of streams on this process already."""


@dataclass
class _Loop:
    """One event loop's streams and its listener."""

    streams: dict[int, set[asyncio.Future]] = field(default_factory=dict)
    revoked_at: dict[int, float] = field(default_factory=dict)
    listener: asyncio.Task | None = None
    ready: asyncio.Future | None = None


_loops: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Loop]" = weakref.WeakKeyDictionary()


def _here() -> _Loop:
    loop = asyncio.get_running_loop()
    state = _loops.get(loop)
    if state is None:
        state = _loops[loop] = _Loop()
    return state


async def listening() -> None:
    """This loop hears revocations from now on (before a stream authenticates)."""
    state = _here()
    if state.ready is None:
        state.ready = asyncio.get_running_loop().create_future()
        state.listener = asyncio.get_running_loop().create_task(_listen(state))
    await asyncio.shield(state.ready)


async def _listen(state: _Loop) -> None:
    try:
        subscription = await live_bus.subscribe(REVOKED_TOPIC)
    except live_bus.LiveBusUnavailable as exc:
        state.ready.set_exception(exc)
        state.ready, state.listener = None, None  # the next stream tries again
        return
    state.ready.set_result(None)
    try:
        # a listener that starts again after one died may have missed revocations meanwhile
        missed = bool(state.streams)
        while True:
            if missed:
                keys = await database_sync_to_async(_revoked_among)(list(state.streams))
            else:
                message = await subscription.get()
                if message.get("type") == live_bus.RESYNC["type"]:
                    missed = True
                    continue
                keys = [message["api_key"]] if isinstance(message.get("api_key"), int) else []
            missed = False
            _end_streams(state, keys)
    except Exception:
        # the database failed a resync, say: the next stream to open starts a listener again
        log.exception("the API-key revocation listener stopped; the next stream starts it again")
        state.ready, state.listener = None, None
    finally:
        await subscription.close()


def _end_streams(state: _Loop, keys: list[int]) -> None:
    now = time.monotonic()
    for pk in keys:
        state.revoked_at[pk] = now
        for ended in state.streams.get(pk, ()):
            if not ended.done():
                ended.set_result(None)
    for pk, at in list(state.revoked_at.items()):
        if now - at > REMEMBER_SECONDS:
            del state.revoked_at[pk]


def _revoked_among(pks: list[int]) -> list[int]:
    from marketplace.models import ApiKey

    return list(ApiKey.objects.filter(pk__in=pks, revoked_at__isnull=False).values_list("pk", flat=True))


def stream_open(api_key_pk: int) -> asyncio.Future:
    """Count a stream on the key; the future it returns is done when the key is revoked.
    ``TooManyStreams`` if the key holds its cap already. Call ``listening()`` first."""
    state = _here()
    mine = state.streams.setdefault(api_key_pk, set())
    if len(mine) >= settings.MAX_STREAMS_PER_KEY:
        raise TooManyStreams(f"this API key has {len(mine)} live streams open here, the most it may; close some")
    ended = asyncio.get_running_loop().create_future()
    if api_key_pk in state.revoked_at:
        ended.set_result(None)
    mine.add(ended)
    return ended


def stream_close(api_key_pk: int, ended: asyncio.Future) -> None:
    state = _here()
    mine = state.streams.get(api_key_pk)
    if mine is not None:
        mine.discard(ended)
        if not mine:
            del state.streams[api_key_pk]
    if not ended.done():
        ended.cancel()


def streams_open(api_key_pk: int) -> int:
    """How many streams the key holds on this loop (for tests and the benchmark)."""
    return len(_here().streams.get(api_key_pk, ()))


def key_revoked_publish(api_key_pk: int) -> None:
    """Tell every web process that the key is revoked: its streams end."""
    live_bus.publish(REVOKED_TOPIC, {"type": "api_key.revoked", "api_key": api_key_pk})
