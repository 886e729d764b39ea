"""A tiny container for load tests: an asyncio HTTP service that answers Infernet's
``POST /service_output`` after sleeping, so thousands of jobs can run at once on a few agents.

The request's ``data`` is ``{"seconds": float, "marker": str}``; the answer is
``{"slept": seconds, "marker": marker}``. The service counts the calls per marker
(a job that ran twice shows up as a marker seen twice) and the most requests it
held in flight at once. ``release()`` ends every sleep now, so a test that has
seen what it wanted need not wait out the rest.
"""
from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter

from aiohttp import web

from tests.support.agent import free_port


class NapService:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.in_flight = 0
        self.peak = 0
        # when each marker's nap began (wall clock, to compare with the database's times), and the naps that ended before their time (not released)
        self.began: dict[str, float] = {}
        self.cut_short: list[tuple[str, float]] = []
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._released: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # --- the service (in its own thread and event loop) -----------------------------------

    async def _nap(self, request: web.Request) -> web.Response:
        body = await request.json()
        data = body.get("data") or {}
        seconds = float(data.get("seconds", 0))
        marker = data.get("marker")
        with self._lock:
            self.calls[str(marker)] += 1
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            self.began[str(marker)] = time.time()
            began = time.monotonic()
        try:
            with contextlib.suppress(asyncio.TimeoutError):  # slept its time (or released early)
                await asyncio.wait_for(self._released.wait(), seconds)
        finally:
            with self._lock:
                self.in_flight -= 1
                slept = time.monotonic() - began
                if slept < seconds - 0.5 and not self._released.is_set():
                    self.cut_short.append((str(marker), slept))
        return web.json_response({"slept": seconds, "marker": marker})

    async def _start(self, port: int) -> None:
        self._released = asyncio.Event()
        app = web.Application()
        app.router.add_post("/service_output", self._nap)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        # a backlog that takes every agent's connections at once
        await web.TCPSite(self._runner, "127.0.0.1", port, backlog=4096).start()

    def start(self) -> "NapService":
        port = free_port()
        self._loop = asyncio.new_event_loop()
        started = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start(port))
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="nap-service", daemon=True)
        self._thread.start()
        if not started.wait(30):
            raise RuntimeError("the nap service did not start")
        self.url = f"http://127.0.0.1:{port}"
        return self

    # --- the test's side --------------------------------------------------------------------

    def release(self) -> None:
        """Every sleep in progress, and every later one, ends now."""
        self._loop.call_soon_threadsafe(self._released.set)

    def container(self, concurrency: int = 100) -> dict:
        """The agent config's container entry for this service (model ``nap``)."""
        return {"id": "nap", "runtime": "http", "url": self.url, "concurrency": concurrency,
                "models": ["nap"], "timeout_seconds": 600}

    def stats(self) -> tuple[int, int]:
        with self._lock:
            return self.in_flight, self.peak

    def spread(self) -> float:
        """Seconds between the first nap's start and the last's."""
        with self._lock:
            return max(self.began.values()) - min(self.began.values()) if self.began else 0.0

    def late(self, after: float) -> list[tuple[str, float]]:
        """The markers whose nap began more than ``after`` seconds after the first one's, latest first."""
        with self._lock:
            first = min(self.began.values(), default=0.0)
            return sorted(((m, t) for m, t in self.began.items() if t - first > after), key=lambda mt: -mt[1])

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self.release()

        async def shutdown() -> None:
            await self._runner.cleanup()

        # stopping is best effort: the server's thread is a daemon and dies with the tests
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
