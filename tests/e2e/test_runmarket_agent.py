"""runmarket's local node agent: started again when it dies, and gone when runmarket goes,
even by SIGKILL, so no orphan keeps its port and the next start works."""
import os
import signal
import time
from pathlib import Path

import requests

from tests.support.market import process_tree, start_market


def _agents(pid: int) -> list[int]:
    found = []
    for child in process_tree(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue  # it exited between the listing and the read
        if b"runnode" in command:
            found.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait(what: str, condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_the_local_agent_is_started_again_and_goes_with_runmarket(tmp_path):
    market = start_market(tmp_path, workers=1)
    try:
        (agent,) = _agents(market.process.pid)
        os.kill(agent, signal.SIGKILL)
        _wait("a new agent", lambda: [p for p in _agents(market.process.pid) if p != agent])
        job = market.wait(market.submit({"model": "echo", "input": "after the agent came back"}), timeout=60)
        assert job["status"] == "completed", job
        (again,) = _agents(market.process.pid)
        args = market.process.args
        agent_port = args[args.index("--agent-port") + 1]
        os.kill(market.process.pid, signal.SIGKILL)  # nothing in runmarket gets to clean up
        market.process.wait(timeout=10)
        _wait("the orphaned agent gone", lambda: not _alive(again), timeout=20)
        _wait("its port free", lambda: _port_free(int(agent_port)), timeout=10)
    finally:
        market.stop()


def _port_free(port: int) -> bool:
    try:
        requests.get(f"http://127.0.0.1:{port}/health", timeout=1)
    except requests.ConnectionError:
        return True
    return False
