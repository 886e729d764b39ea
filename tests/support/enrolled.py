"""A real node agent enrolled with a live (test) marketplace, as a miner would start one."""
from __future__ import annotations

import time
from pathlib import Path

from nodes.models import Node
from nodes.services import enrollment_token_create
from tests import factories
from tests.support.agent import RunningAgent, start_agent


def start_enrolled_agent(tmp_path: Path, marketplace_url: str, name: str, containers: list[dict],
                         **config) -> RunningAgent:
    """Start ``runnode`` with a fresh enrolment token; return once the marketplace knows the node.

    The agent gets ``.node``, its Node row, once its socket to the marketplace is open.
    """
    token = enrollment_token_create(miner=factories.miner()).secret
    agent = start_agent(
        tmp_path / name,
        {"containers": containers, "capacity": 4, **config},
        env={"NODE_HEARTBEAT_SECONDS": "1"},
        extra_args=["--marketplace", marketplace_url, "--enroll-token", token, "--name", name],
    )
    deadline = time.monotonic() + 20
    while not Node.objects.filter(name=name).exclude(channel_name="").exists():
        if time.monotonic() > deadline:
            agent.stop()
            raise AssertionError(f"node {name} did not enrol:\n{agent.log()}")
        time.sleep(0.05)
    agent.node = Node.objects.get(name=name)
    return agent
