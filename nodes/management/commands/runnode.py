"""``python manage.py runnode``: run a node agent on this machine."""
from __future__ import annotations

import logging
import socket
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from nodes.agent.config import ConfigError, load_config
from nodes.agent.main import MarketplaceOptions, run
from nodes.agent.marketplace_link import LinkError
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
        parser.add_argument("--marketplace", help="marketplace URL to enrol with; the node dials its socket (no inbound port)")
        parser.add_argument("--enroll-token", help="one-time enrolment token from the miner dashboard or admin")
        parser.add_argument("--name", default="", help="a name for this node on the marketplace")
        parser.add_argument("--price-per-second-wei", help="the price this node asks per GPU-second (per second "
                                                           "without a GPU), in wei; the marketplace holds it within "
                                                           "its policy's bounds. Change it later on the miner dashboard")

    def handle(self, *args, **options):
        try:
            config = load_config(
                options["config"],
                port=options["port"] or (None if options["config"] else settings.NODE_AGENT_PORT),
                host=options["host"],
                node_id=options["node_id"],
                price_per_second_wei=options["price_per_second_wei"],
            )
        except ConfigError as exc:
            raise CommandError(f"bad agent config: {exc}") from None
        state_dir = Path(options["state_dir"] or config.state_dir or settings.NODE_AGENT_STATE_DIR)
        logging.getLogger("aiohttp.access").setLevel(logging.INFO if options["access_log"] else logging.WARNING)
        marketplace = None
        if options["marketplace"]:
            marketplace = MarketplaceOptions(
                url=options["marketplace"].rstrip("/"),
                enroll_token=options["enroll_token"],
                name=options["name"] or socket.gethostname(),
            )
        elif options["enroll_token"]:
            raise CommandError("--enroll-token needs --marketplace URL")
        try:
            run(config, state_dir, access_log=options["access_log"], marketplace=marketplace)
        except (DockerUnavailable, LinkError) as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            raise CommandError(f"cannot start the agent: {exc}") from None
