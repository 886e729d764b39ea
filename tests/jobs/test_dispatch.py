"""Dispatch against real node agents enrolled with this (live) marketplace.

The broker is the edge here: follow-up messages are recorded, and the tests call
the dispatch service the way the actor would.
"""
import os
import signal
import threading
import time

import pytest
import requests

from jobs.dispatch import dispatch
from jobs.models import Job, JobAttempt, JobStatus
from jobs.services.lifecycle import job_cancel
from marketplace.services import customer_get_or_create
from nodes.models import Node
from tests import factories
from tests.support.agent import start_agent
from tests.support.enrolled import start_enrolled_agent

pytestmark = pytest.mark.django_db(transaction=True)

CONTAINERS = [
    {"id": "echo", "entrypoint": "nodes.agent.builtin:echo", "models": ["echo"], "workers": 2},
    {"id": "sleep", "entrypoint": "nodes.agent.builtin:sleep", "models": ["sleep"], "workers": 2},
    {"id": "tokens", "entrypoint": "nodes.agent.builtin:tokens", "models": ["tokens"]},
    {"id": "refuse", "entrypoint": "tests.nodes.agent.containers:refuse", "models": ["refuse"]},
]


@pytest.fixture
def enroll(live_server, tmp_path):
    agents = []

    def _enroll(name: str):
        agent = start_enrolled_agent(tmp_path, live_server.url, name, CONTAINERS)
        agents.append(agent)
        return agent

    yield _enroll
    for agent in agents:
        agent.stop()


def make_job(model="echo", input=None, **fields):
    customer = customer_get_or_create(name="dispatch-tests")
    return Job.objects.create(customer=customer, model=model, input=input if input is not None else {"x": 1}, **fields)


def test_a_job_runs_on_the_node_and_settles_with_a_verified_receipt(enroll):
    agent = enroll("alpha")
    job = make_job(input="hello")
    dispatch(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED, job.status_reason
    assert job.result == {"input": "hello"} and job.node == agent.node and job.progress == 100
    assert job.receipt_verified and job.receipt["signer"] == agent.node.identity_public_key
    assert [e.new_status for e in job.events.all()] == ["assigned", "running", "completed"]
    (attempt,) = job.attempts.all()
    assert attempt.status == JobAttempt.Status.SUCCEEDED and attempt.node_job_id == job.node_job_id


def test_two_workers_racing_for_one_job_run_it_once(enroll):
    agent = enroll("alpha")
    job = make_job(model="sleep", input={"seconds": 0.5})
    barrier = threading.Barrier(2)

    def worker():
        barrier.wait()
        dispatch(job.pk)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert job.attempts.count() == 1
    ran = requests.get(agent.url + "/api/jobs", headers={"Authorization": f"Bearer {agent.node.push_token}"}, timeout=5)
    assert len(ran.json()) == 1, "the node must have been given the job exactly once"


def test_a_container_error_fails_the_job_without_failover(enroll, sent_dispatches):
    enroll("alpha")
    job = make_job(model="refuse")
    dispatch(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error == "this container refuses every job"
    assert job.status_reason == "container refuse failed: this container refuses every job"
    assert job.attempts.count() == 1 and sent_dispatches == []


def test_an_unreachable_node_fails_over_to_another(enroll, sent_dispatches):
    good = enroll("good")
    dead = factories.node(models=("echo",), url="http://127.0.0.1:9", capacity=100)  # nothing listens there
    Node.objects.filter(pk=good.node.pk).update(capacity=1)
    busy = JobAttempt.objects.create(job=make_job(status=JobStatus.COMPLETED), node=good.node, number=1)
    job = make_job()
    dispatch(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and dead.public_id in job.excluded_nodes
    assert "unreachable" in job.status_reason and sent_dispatches == [(job.pk,)]
    JobAttempt.objects.filter(pk=busy.pk).update(status=JobAttempt.Status.SUCCEEDED)  # good is free now
    dispatch(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED and job.node == good.node
    assert [a.status for a in job.attempts.all()] == ["lost", "succeeded"]


def test_a_node_killed_mid_job_fails_over(enroll, sent_dispatches):
    first = enroll("first")
    second = enroll("second")
    Node.objects.filter(pk=second.node.pk).update(capacity=1)
    JobAttempt.objects.create(job=make_job(status=JobStatus.COMPLETED), node=second.node, number=1)
    job = make_job(model="sleep", input={"seconds": 5})
    killer = threading.Thread(target=lambda: (time.sleep(1.0), os.kill(first.process.pid, signal.SIGKILL)))
    killer.start()
    dispatch(job.pk)
    killer.join()
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.excluded_nodes == [first.node.public_id]
    assert "mid-job" in job.status_reason
    JobAttempt.objects.filter(node=second.node, job__status=JobStatus.COMPLETED).update(status="succeeded")
    dispatch(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED and job.node == second.node
    assert job.result == {"slept": 5}


def test_the_timeout_is_enforced_and_the_node_stops_the_job(enroll):
    agent = enroll("alpha")
    job = make_job(model="sleep", input={"seconds": 30}, timeout_seconds=1)
    started = time.monotonic()
    dispatch(job.pk)
    job.refresh_from_db()
    assert time.monotonic() - started < 10
    assert job.status == JobStatus.FAILED and job.status_reason == "timed out after 1 s"
    node_job = requests.get(agent.url + "/api/jobs", params={"id": job.node_job_id},
                            headers={"Authorization": f"Bearer {agent.node.push_token}"}, timeout=5).json()[0]
    assert node_job["status"] == "failed" and node_job["reason"] == "cancelled"


def test_a_cancel_while_running_reaches_the_node(enroll):
    agent = enroll("alpha")
    job = make_job(model="sleep", input={"seconds": 30})

    def cancel_soon():
        deadline = time.monotonic() + 10
        while Job.objects.get(pk=job.pk).status != JobStatus.RUNNING and time.monotonic() < deadline:
            time.sleep(0.05)
        job_cancel(job=Job.objects.get(pk=job.pk))

    canceller = threading.Thread(target=cancel_soon)
    canceller.start()
    dispatch(job.pk)
    canceller.join()
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job.attempts.get().status == JobAttempt.Status.CANCELLED
    node_job = requests.get(agent.url + "/api/jobs", params={"id": job.node_job_id},
                            headers={"Authorization": f"Bearer {agent.node.push_token}"}, timeout=5).json()[0]
    assert node_job["reason"] == "cancelled"


def test_a_job_no_node_can_take_waits_then_expires_saying_why(enroll, sent_dispatches, settings):
    enroll("alpha")
    job = make_job(gpu_type="h100", gpu_count=1)
    dispatch(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.status_reason == "no online node offers gpu_type h100"
    assert sent_dispatches == [(job.pk,)], "it tries again later"
    Job.objects.filter(pk=job.pk).update(queue_deadline=job.created_at)
    dispatch(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.EXPIRED
    assert job.status_reason.startswith("no online node offers gpu_type h100")


def test_a_redelivered_message_for_a_finished_job_does_nothing(enroll):
    enroll("alpha")
    job = make_job()
    dispatch(job.pk)
    dispatch(job.pk)
    assert Job.objects.get(pk=job.pk).attempts.count() == 1


def test_a_forged_receipt_is_not_accepted(enroll, sent_dispatches):
    from jobs.dispatch import receipt_matches

    agent = enroll("alpha")
    job = make_job(input="x")
    dispatch(job.pk)
    job.refresh_from_db()
    args = dict(node=agent.node, node_job_id=job.node_job_id, data=job.container_data,
                container_result={"container": "echo", "output": job.result})
    assert receipt_matches(receipt=job.receipt, **args)
    assert not receipt_matches(receipt=job.receipt, **{**args, "container_result": {"container": "echo", "output": "forged"}})
    assert not receipt_matches(receipt=job.receipt, **{**args, "node_job_id": "another-job"})
    other = factories.node()
    assert not receipt_matches(receipt=job.receipt, **{**args, "node": other})


def test_a_port_in_use_does_not_spend_the_enrolment_token(live_server, tmp_path):
    import socket
    import subprocess
    import sys

    from nodes.models import EnrollmentToken
    from nodes.services import enrollment_token_create
    from tests.support.agent import PROJECT_ROOT

    token = enrollment_token_create(miner=factories.miner())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = subprocess.run(
            [sys.executable, "manage.py", "runnode", "--port", str(port), "--state-dir", str(tmp_path / "s"),
             "--marketplace", live_server.url, "--enroll-token", token.secret],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
        )
    assert refused.returncode != 0 and "address already in use" in refused.stderr + refused.stdout
    assert EnrollmentToken.objects.get(pk=token.token.pk).used_at is None, "the token is still good"
    agent = start_agent(tmp_path / "retry", {"containers": CONTAINERS},
                        extra_args=["--marketplace", live_server.url, "--enroll-token", token.secret])
    try:
        assert EnrollmentToken.objects.get(pk=token.token.pk).used_at is not None, "the same token enrolled"
    finally:
        agent.stop()
