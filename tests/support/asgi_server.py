"""The marketplace's ASGI application served from a thread of the test process (uvicorn).

pytest-django's own live server speaks WSGI only; nodes reach the marketplace over
a WebSocket, so in-process tests that run real agents need the ASGI application,
with the test database and the in-memory channel layer of this very process.
"""
from __future__ import annotations

import asyncio
import threading
import time

from django.test.utils import modify_settings

from tests.support.agent import free_port


class AsgiLiveServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        import uvicorn

        from marketplace.asgi import application

        self.host, self.port = host, free_port()
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(application, host=host, port=self.port, lifespan="off", log_level="warning",
                                ws="websockets", ws_max_size=16 * 1024 * 1024)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="asgi-live-server", daemon=True)
        # what pytest-django's helper turns on around each test that uses the live server
        self._live_server_modified_settings = modify_settings(ALLOWED_HOSTS={"append": host})
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the ASGI live server did not start")
            time.sleep(0.02)

    def _run(self) -> None:
        asyncio.run(self._server.serve())

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __str__(self) -> str:
        return self.url
