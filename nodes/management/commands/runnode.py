"""``python manage.py runnode``: run a node agent on this machine."""
from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from nodes.agent.config import ConfigError, load_config
from nodes.agent.main import run
from nodes.agent.runtimes.docker import DockerUnavailable


class Command(BaseCommand):
    help = "Run an Infernet-compatible node agent (built-in containers unless --config names others)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, help="port to listen on (default 4000)")
        parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
        parser.add_argument("--config", help="JSON config file with the containers and limits")
        parser.add_argument("--state-dir", help="where the identity key lives (default var/agent)")
        parser.add_argument("--node-id", help="this node's id (default: derived from its identity key)")
        parser.add_argument("--access-log", action="store_true", help="log every request")

    def handle(self, *args, **options):
        try:
            config = load_config(
                options["config"],
                port=options["port"] or (None if options["config"] else settings.NODE_AGENT_PORT),
                host=options["host"],
                node_id=options["node_id"],
            )
        except ConfigError as exc:
            raise CommandError(f"bad agent config: {exc}") from None
        state_dir = Path(options["state_dir"] or config.state_dir or settings.NODE_AGENT_STATE_DIR)
        logging.getLogger("aiohttp.access").setLevel(logging.INFO if options["access_log"] else logging.WARNING)
        try:
            run(config, state_dir, access_log=options["access_log"])
        except DockerUnavailable as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            raise CommandError(f"cannot start the agent: {exc}") from None
