"""Start the agent: load its identity, bring its containers up, serve until stopped."""
from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from nodes.agent.config import AgentConfig
from nodes.agent.identity import load_or_create_identity
from nodes.agent.marketplace_link import enroll
from nodes.agent.node_socket import NodeSocket
from nodes.agent.server import build_app, build_state

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MarketplaceOptions:
    url: str
    enroll_token: str | None
    name: str


async def serve(config: AgentConfig, state_dir: Path, *, access_log: bool = False, ready=print,
                marketplace: MarketplaceOptions | None = None) -> None:
    identity = load_or_create_identity(state_dir)
    state = build_state(config, state_dir, identity=identity)
    app = build_app(state)
    runner = web.AppRunner(app, access_log=log if access_log else None, handle_signals=False)
    await runner.setup()
    try:
        # listen first, enrol after: a port already in use must not spend the one-time token
        site = web.TCPSite(runner, config.host, config.port, backlog=1024, reuse_address=True)
        await site.start()
        enrollment = None
        if marketplace is not None:
            enrollment = await enroll(
                marketplace=marketplace.url, token=marketplace.enroll_token, config=config, identity=identity,
                state_dir=state_dir, name=marketplace.name, keyring=state.keyring,
            )
            state.enrolled(node_id=enrollment.node_id)
        ready(
            f"node agent {state.node_id} listening on http://{config.host}:{config.port} "
            f"({len(config.containers)} containers: {', '.join(c.id for c in config.containers)})"
        )
        if enrollment is not None:
            state.background.add(asyncio.create_task(NodeSocket(state, enrollment).run()))
            ready(f"enrolled with {enrollment.marketplace} as {enrollment.node_id}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def run(config: AgentConfig, state_dir: Path, *, access_log: bool = False,
        marketplace: MarketplaceOptions | None = None) -> None:
    asyncio.run(serve(config, state_dir, access_log=access_log, marketplace=marketplace))
