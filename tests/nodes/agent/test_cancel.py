"""DELETE /api/jobs/{id} stops a running job: the process dies, the job ends failed/cancelled."""
import os
import time
import uuid

import requests

from tests.support.agent import start_agent


def _wait_running(agent, job_id, progress=0.0):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        job = agent.result(job_id)
        if job["progress"] > progress:
            return job
        time.sleep(0.02)
    raise AssertionError("job never made progress")


def test_cancelling_a_running_job_kills_its_process(tmp_path):
    agent = start_agent(
        tmp_path,
        {"containers": [
            {"id": "sleep", "entrypoint": "nodes.agent.builtin:sleep"},
            {"id": "pid", "entrypoint": "tests.nodes.agent.containers:pid"},
            {"id": "cmd_sleep", "command": ["sleep", "30"]},
        ]},
    )
    try:
        job_id = agent.submit(["sleep"], {"seconds": 30})
        _wait_running(agent, job_id)
        response = requests_delete(agent, job_id)
        assert response.status_code == 200
        job = response.json()
        assert job["status"] == "failed"
        assert job["reason"] == "cancelled"
        assert job["result"] == {"container": "sleep", "error": "Job cancelled"}
        assert job["receipt"]["body"]["status"] == "failed"
        # cancelling again is harmless and says the same
        assert requests_delete(agent, job_id).json()["reason"] == "cancelled"
        # the sleep container's worker was killed and replaced: a new job runs at once
        assert agent.wait(agent.submit(["sleep"], {"seconds": 0}), timeout=10)["status"] == "success"

        command_job = agent.submit(["cmd_sleep"], {})
        time.sleep(0.3)
        children = _sleep_processes()
        assert children, "the command container should be running"
        assert requests_delete(agent, command_job).json()["reason"] == "cancelled"
        time.sleep(0.3)
        assert not (_sleep_processes() & children), "the command's process must be gone"
    finally:
        agent.stop()


def test_a_finished_job_cannot_be_cancelled(agent):
    job_id = agent.submit(["echo"], {})
    agent.wait(job_id)
    response = requests_delete(agent, job_id)
    assert response.status_code == 409
    assert response.json()["error"] == "Job already finished"


def test_an_unknown_job_is_a_404(agent):
    assert requests_delete(agent, str(uuid.uuid4())).status_code == 404


def requests_delete(agent, job_id):
    return requests.delete(f"{agent.url}/api/jobs/{job_id}", timeout=10)


def _sleep_processes() -> set[int]:
    """Pids of the `sleep 30` processes on this machine."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().split(b"\0")
        except OSError:
            continue
        if cmdline[:2] == [b"sleep", b"30"]:
            found.add(int(entry))
    return found


def test_a_job_a_legacy_container_records_itself_cannot_be_cancelled_here(agent):
    job_id = str(uuid.uuid4())
    response = requests.put(
        f"{agent.url}/api/status", json={"id": job_id, "status": "running", "containers": ["echo"]}, timeout=10
    )
    assert response.status_code == 200
    refused = requests_delete(agent, job_id)
    assert refused.status_code == 409
    assert refused.json()["error"] == "Job is run by a container on its own; it cannot be cancelled here"
