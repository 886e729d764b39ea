"""Start the agent: load its identity, bring its containers up, serve until stopped."""
from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from aiohttp import web

from nodes.agent.config import AgentConfig
from nodes.agent.server import build_app, build_state

log = logging.getLogger(__name__)


async def serve(config: AgentConfig, state_dir: Path, *, access_log: bool = False, ready=print) -> None:
    state = build_state(config, state_dir)
    app = build_app(state)
    runner = web.AppRunner(app, access_log=log if access_log else None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port, backlog=1024, reuse_address=True)
        await site.start()
        ready(
            f"node agent {state.node_id} listening on http://{config.host}:{config.port} "
            f"({len(config.containers)} containers: {', '.join(c.id for c in config.containers)})"
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def run(config: AgentConfig, state_dir: Path, *, access_log: bool = False) -> None:
    asyncio.run(serve(config, state_dir, access_log=access_log))
