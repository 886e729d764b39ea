"""Process containers that crash, hang or talk nonsense fail their job clearly; the agent goes on."""
import time

import pytest


def _assert_still_serving(agent):
    job = agent.wait(agent.submit(["echo"], {"alive": True}))
    assert job["result"]["output"] == {"alive": True}


@pytest.mark.parametrize(
    "container,expected",
    [
        ("crash", "container process exited unexpectedly (exit code 3): about to crash"),
        ("hang", "Container timed out after 1s"),
        ("not_json", "Object of type object is not JSON serializable"),
        ("refuse", "this container refuses every job"),
        ("cmd_crash", "container exited with code 3: segfault in the model"),
        ("cmd_hang", "Container timed out after 1s"),
        ("cmd_not_json", "container output is not valid JSON: 'this is not json\\n'"),
    ],
)
def test_a_misbehaving_container_fails_its_job_with_a_clear_error(agent, container, expected):
    job = agent.wait(agent.submit([container], {"text": "x"}), timeout=20)
    assert job["status"] == "failed"
    assert job["result"] == {"container": container, "error": expected}
    assert job["receipt"]["body"]["status"] == "failed"
    _assert_still_serving(agent)


def test_a_crashed_worker_is_replaced_and_serves_the_next_job(agent):
    for _ in range(3):
        assert agent.wait(agent.submit(["crash"], {}))["status"] == "failed"
    # the crash container's entry point crashes every time, but its replacement takes the job
    assert "exited unexpectedly" in agent.wait(agent.submit(["crash"], {}))["result"]["error"]


def test_a_hung_worker_is_killed_and_replaced(agent):
    assert agent.wait(agent.submit(["hang"], {}), timeout=10)["status"] == "failed"
    # the hang container has one worker; had it not been killed and replaced at the
    # timeout, this job would queue behind the hung one instead of timing out itself
    started = time.monotonic()
    job = agent.wait(agent.submit(["hang"], {}), timeout=10)
    assert job["result"]["error"] == "Container timed out after 1s"
    assert time.monotonic() - started < 5


def test_prints_from_the_entry_point_do_not_corrupt_its_output(agent):
    assert agent.wait(agent.submit(["chatty"], {}))["result"]["output"] == {"ok": True}


def test_workers_stay_warm_between_jobs(agent):
    pids = {agent.wait(agent.submit(["pid"], {}))["result"]["output"]["pid"] for _ in range(5)}
    assert len(pids) == 1, "one worker serves every job: no process start per job"
