"""A rundramatiq worker that dies (a segfault, the OOM killer, kill -9) is started again by its
supervisor, and the queue is served again: the next job that needs a worker runs."""
import os
import signal
import time
from pathlib import Path

import pytest

from tests.support.market import process_tree, services_configured, start_market

pytestmark = pytest.mark.skipif(not services_configured(),
                                reason="rundramatiq runs beside a shared broker (CI's PostgreSQL run)")


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _children(pid: int) -> list[int]:
    return [p for p in process_tree(pid) if p != pid and _parent(p) == pid]


def test_a_worker_killed_outright_is_started_again_and_serves_the_next_job(tmp_path):
    # long queue deadline: the job below waits for the restart and for its node
    market = start_market(tmp_path, agent=False, workers=1, env={"JOB_QUEUE_TIMEOUT_SECONDS": "120"})
    try:
        # a node that serves echo enrols and goes: the model is known, and no node is connected
        gone = market.add_agent(tmp_path / "gone", "gone")
        gone.process.terminate()
        gone.process.wait(timeout=30)
        supervisor = market.workers[0]
        (dramatiq,) = _children(supervisor.pid)
        workers = _children(dramatiq)
        assert workers, "dramatiq runs its actors in worker processes"
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 90
        while True:
            alive = _children(supervisor.pid)
            if alive and alive != [dramatiq] and _children(alive[0]):
                log = (tmp_path / "worker-0.log").read_text(errors="replace")
                if log.count("ready for action") >= 2:
                    break
            assert time.monotonic() < deadline and supervisor.poll() is None, (
                "the worker was not started again:\n" + (tmp_path / "worker-0.log").read_text(errors="replace")[-3000:])
            time.sleep(0.2)
        # queued while no node is connected: only a worker's pass (the node's arrival asks for one)
        # or a worker's sweep can start it, so it runs only if the worker came back
        job_id = market.submit({"model": "echo", "input": "after the restart"})
        assert market.job(job_id)["status"] == "queued"
        market.add_agent(tmp_path / "back", "back")
        job = market.wait(job_id, timeout=60)
        assert job["status"] == "completed", job
    finally:
        market.stop()
