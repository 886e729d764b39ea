"""The job path against real node agents that dial this (live, ASGI) marketplace's socket.

The broker is the edge here: a ``dispatch_job`` message runs a scheduler pass at
once, and the watchdog sweeps in the background, as a worker would (``dispatcher``).
"""
import json
import os
import signal
import time
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.utils import timezone

from billing.models import LedgerTransaction
from jobs.dispatch.attempts import receipt_matches
from jobs.models import Job, JobAttempt, JobStatus
from jobs.services.lifecycle import job_cancel
from marketplace.services import customer_get_or_create
from nodes.agent.identity import Identity
from nodes.models import Node
from tests import factories
from tests.support.agent import start_agent
from tests.support.waiting import wait_for
from tests.support.enrolled import start_enrolled_agent
from tests.support.fake_node import FakeNode
from wire.frames import SOCKET_PATH

pytestmark = pytest.mark.django_db(transaction=True)

CONTAINERS = [
    {"id": "echo", "entrypoint": "nodes.agent.builtin:echo", "models": ["echo"], "workers": 2},
    {"id": "sleep", "entrypoint": "nodes.agent.builtin:sleep", "models": ["sleep"], "workers": 2},
    {"id": "tokens", "entrypoint": "nodes.agent.builtin:tokens", "models": ["tokens"]},
    {"id": "refuse", "entrypoint": "tests.nodes.agent.containers:refuse", "models": ["refuse"]},
    {"id": "huge", "entrypoint": "tests.nodes.agent.containers:huge", "models": ["huge"]},
]
FINAL = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED)


@pytest.fixture
def enroll(live_server, tmp_path, dispatcher):
    agents = []

    def _enroll(name: str, **config):
        agent = start_enrolled_agent(tmp_path, live_server.url, name, CONTAINERS, **config)
        agents.append(agent)
        return agent

    yield _enroll
    for agent in agents:
        agent.stop()


def make_job(dispatcher=None, model="echo", input=None, **fields):
    customer = customer_get_or_create(name="dispatch-tests")
    job = Job.objects.create(customer=customer, model=model, input=input if input is not None else {"x": 1}, **fields)
    if dispatcher is not None:
        dispatcher.send(job.pk)
    return job


def wait_job(job, statuses=FINAL, timeout=30):
    return wait_for(lambda: (j := Job.objects.get(pk=job.pk)).status in statuses and j, timeout=timeout,
                    message=f"job {job.public_id} never reached {statuses}: {Job.objects.get(pk=job.pk).status_reason}")


def test_a_job_runs_on_the_node_and_settles_with_a_verified_receipt(enroll, dispatcher):
    agent = enroll("alpha")
    job = wait_job(make_job(dispatcher, input="hello"))
    assert job.status == JobStatus.COMPLETED, job.status_reason
    assert job.result == {"input": "hello"} and job.node == agent.node and job.progress == 100
    assert job.receipt_verified and job.receipt["signer"] == agent.node.identity_public_key
    assert [e.new_status for e in job.events.all()] == ["assigned", "running", "completed"]
    (attempt,) = job.attempts.all()
    assert attempt.status == JobAttempt.Status.SUCCEEDED and attempt.node_job_id == job.node_job_id


def test_an_agent_with_no_inbound_port_known_to_the_marketplace_runs_its_jobs(enroll, dispatcher):
    agent = enroll("hidden")
    node = Node.objects.get(pk=agent.node.pk)
    assert node.url == "" and str(agent.port) not in str(Node.objects.filter(pk=node.pk).values().first())
    job = wait_job(make_job(dispatcher, model="tokens", input={"text": "a b c"}))
    assert job.status == JobStatus.COMPLETED and job.result == {"text": "a b c", "tokens": 3}


def test_a_container_error_fails_the_job_without_failover(enroll, dispatcher):
    enroll("alpha")
    job = wait_job(make_job(dispatcher, model="refuse"))
    assert job.status == JobStatus.FAILED
    assert job.error == "this container refuses every job"
    assert job.status_reason == "container refuse failed: this container refuses every job"
    assert job.attempts.count() == 1


def test_an_output_too_large_for_the_socket_fails_the_job_once_instead_of_never_landing(enroll, dispatcher):
    from wire.frames import MAX_FRAME_BYTES

    enroll("alpha")
    job = wait_job(make_job(dispatcher, model="huge", input={"bytes": MAX_FRAME_BYTES + 1}), timeout=60)
    assert job.status == JobStatus.FAILED and job.attempts.count() == 1, job.status_reason
    assert "the marketplace takes at most" in job.error and job.receipt_verified
    fits = wait_job(make_job(dispatcher, model="huge", input={"bytes": 1_000_000}), timeout=60)
    assert fits.status == JobStatus.COMPLETED and len(fits.result["text"]) == 1_000_000


def test_a_node_killed_mid_job_fails_over_after_the_grace(enroll, dispatcher, settings):
    settings.NODE_OFFLINE_AFTER_SECONDS, settings.NODE_HEARTBEAT_SECONDS = 3, 1
    first = enroll("first")
    job = make_job(dispatcher, model="sleep", input={"seconds": 2})
    wait_job(job, (JobStatus.RUNNING,))
    assert Job.objects.get(pk=job.pk).node_id == first.node.pk
    os.kill(first.process.pid, signal.SIGKILL)
    second = enroll("second")
    job = wait_job(job, timeout=40)
    assert job.status == JobStatus.COMPLETED and job.node == second.node and job.result == {"slept": 2}
    assert job.excluded_nodes == [first.node.public_id]
    assert [a.status for a in job.attempts.all()] == ["lost", "succeeded"]
    assert "no heartbeat" in job.attempts.first().error


def test_a_socket_dropped_mid_job_lands_the_result_once_and_bills_once(enroll, dispatcher, alice, alice_api):
    agent = enroll("alpha")
    submitted = alice_api.post("/v1/jobs", {"model": "sleep", "input": {"seconds": 2}}, format="json")
    assert submitted.status_code == 201, submitted.content
    job = Job.objects.get(public_id=submitted.json()["job_id"])
    wait_job(job, (JobStatus.RUNNING,))
    # cut the socket and keep the node out until its result is made
    Node.objects.filter(pk=agent.node.pk).update(approval=Node.Approval.SUSPENDED)
    from jobs.live import send_to_channel

    send_to_channel(Node.objects.get(pk=agent.node.pk).channel_name, {"type": "node.superseded"})
    wait_for(lambda: Node.objects.get(pk=agent.node.pk).channel_name == "", message="the socket did not close")
    time.sleep(2.5)  # the job finishes on the node while its socket is down
    assert Job.objects.get(pk=job.pk).status == JobStatus.RUNNING
    Node.objects.filter(pk=agent.node.pk).update(approval=Node.Approval.APPROVED)
    job = wait_job(job, timeout=40)
    assert job.status == JobStatus.COMPLETED and job.result == {"slept": 2}
    assert job.attempts.count() == 1
    settles = LedgerTransaction.objects.filter(job=job, kind=LedgerTransaction.Kind.SETTLE)
    assert settles.count() == 1 and job.billing_status == "settled"


def test_the_timeout_counts_from_assignment_and_the_node_stops_the_job(enroll, dispatcher):
    agent = enroll("alpha")
    started = time.monotonic()
    job = wait_job(make_job(dispatcher, model="sleep", input={"seconds": 30}, timeout_seconds=1))
    assert time.monotonic() - started < 6
    assert job.status == JobStatus.FAILED and job.status_reason == "timed out after 1 s"
    wait_for(lambda: "cancelled at the marketplace's request" in agent.log(), message=agent.log())


def test_a_cancel_while_running_reaches_the_node(enroll, dispatcher):
    agent = enroll("alpha")
    job = wait_job(make_job(dispatcher, model="sleep", input={"seconds": 30}), (JobStatus.RUNNING,))
    job_cancel(job=job)
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job.attempts.get().status == JobAttempt.Status.CANCELLED
    wait_for(lambda: "cancelled at the marketplace's request" in agent.log(), message=agent.log())


def test_a_job_no_node_can_take_waits_then_expires_saying_why(enroll, dispatcher):
    enroll("alpha")
    job = make_job(dispatcher, gpu_type="h100", gpu_count=1)
    time.sleep(0.5)
    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED
    Job.objects.filter(pk=job.pk).update(queue_deadline=job.created_at)
    job = wait_job(job)
    assert job.status == JobStatus.EXPIRED
    assert job.status_reason.startswith("no online node offers gpu_type h100")


def test_a_lone_node_that_restarts_runs_its_interrupted_job_again(enroll, dispatcher, tmp_path):
    agent = enroll("alone")
    job = wait_job(make_job(dispatcher, model="sleep", input={"seconds": 3}), (JobStatus.RUNNING,))
    os.kill(agent.process.pid, signal.SIGKILL)
    agent.process.wait()
    restarted = start_agent(tmp_path / "alone-again", {"containers": CONTAINERS, "capacity": 4},
                            state_dir=agent.state_dir, env={"NODE_HEARTBEAT_SECONDS": "1"},
                            extra_args=["--marketplace", _market_url(agent)])
    try:
        job = wait_job(job, timeout=30)
        assert job.status == JobStatus.COMPLETED and job.node_id == agent.node.pk
        assert [a.status for a in job.attempts.all()] == ["lost", "succeeded"]
        assert "restarted" in job.attempts.first().error and job.excluded_nodes == []
    finally:
        restarted.stop()


def _market_url(agent) -> str:
    import json

    return json.loads((agent.state_dir / "enrollment.json").read_text())["marketplace"]


def test_a_forged_receipt_is_not_accepted(enroll, dispatcher):
    agent = enroll("alpha")
    job = wait_job(make_job(dispatcher, input="x"))
    args = dict(node=agent.node, node_job_id=job.node_job_id, data=job.container_data,
                container_result={"container": "echo", "output": job.result})
    assert receipt_matches(receipt=job.receipt, **args)
    assert not receipt_matches(receipt=job.receipt, **{**args, "container_result": {"container": "echo", "output": "forged"}})
    assert not receipt_matches(receipt=job.receipt, **{**args, "node_job_id": "another-job"})
    assert not receipt_matches(receipt=job.receipt, **{**args, "node": factories.node()})


# --- peers no real agent would be ------------------------------------------------------------


@pytest.fixture
def fake_node(live_server, dispatcher):
    nodes = []

    def _make(**kwargs):
        node = FakeNode(live_server.url, **kwargs)
        nodes.append(node)
        return node

    yield _make
    for node in nodes:
        node.close()


def _socket_headers(peer, problem: str) -> dict:
    from wire.encoding import b64u
    from wire.signing import request_signing_message

    headers = peer.headers()
    if problem == "wrong_token":
        headers["Authorization"] = "Bearer not-the-token"
    elif problem == "no_token":
        del headers["Authorization"]
    elif problem == "forged_signature":
        headers["X-Node-Signature"] = "A" * 86
    elif problem == "stale":
        stamp = str(int(time.time()) - 3600)
        headers["X-Node-Timestamp"] = stamp
        headers["X-Node-Signature"] = b64u(peer.identity.sign(
            request_signing_message(stamp, "GET", SOCKET_PATH, b"", nonce=headers["X-Node-Nonce"])))
    elif problem == "another_key":
        headers.update(Identity(Ed25519PrivateKey.generate()).sign_request("GET", SOCKET_PATH, b""))
    elif problem == "another_node":
        headers["X-Node-Id"] = factories.node(online=False).public_id
    return headers


@pytest.mark.parametrize("problem", ["wrong_token", "no_token", "forged_signature", "stale", "another_key",
                                     "another_node"])
def test_a_socket_without_the_right_token_or_signature_is_refused(fake_node, problem):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    peer = fake_node()
    with pytest.raises(InvalidStatus):
        connect(peer.url, additional_headers=_socket_headers(peer, problem), open_timeout=10)
    assert Node.objects.get(pk=peer.node.pk).channel_name == ""


def test_a_signed_upgrade_sent_again_is_refused_as_a_replay(fake_node):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    peer = fake_node()
    headers = peer.headers()
    first = connect(peer.url, additional_headers=headers, open_timeout=10)
    assert json.loads(first.recv(timeout=10))["type"] == "welcome"
    first.close()
    with pytest.raises(InvalidStatus):  # the very same signed request, well inside its 120 s
        connect(peer.url, additional_headers=headers, open_timeout=10)
    peer.connect()  # signed anew: fine


def test_heartbeats_on_the_socket_keep_the_node_online_and_report_its_capacity(fake_node):
    peer = fake_node(capacity=4)
    peer.connect()
    # the hello is handled in turn with the node's other frames, a heartbeat at once: the hello first
    wait_for(lambda: Node.objects.get(pk=peer.node.pk).last_heartbeat.get("capacity") == 4,
             message="the hello was not handled")
    Node.objects.filter(pk=peer.node.pk).update(last_heartbeat_at=timezone.now() - timedelta(hours=1))
    assert not Node.objects.get(pk=peer.node.pk).is_online

    peer.send({"type": "heartbeat", "capacity": 5, "running": []})

    wait_for(lambda: Node.objects.get(pk=peer.node.pk).is_online, message="the heartbeat was not recorded")
    assert Node.objects.get(pk=peer.node.pk).capacity == 5


def test_a_node_that_takes_a_job_and_never_answers_loses_it_and_nobody_waits(fake_node, enroll, dispatcher,
                                                                             monkeypatch):
    from jobs.dispatch import watchdog

    monkeypatch.setattr(watchdog, "ACCEPT_SECONDS", 1)
    silent = fake_node(capacity=100)
    silent.connect()
    Node.objects.filter(pk=silent.node.pk).update(price_per_second_wei=0)
    job = make_job(dispatcher, input="first")
    assert silent.receive_type("job")["job_id"] == job.public_id  # given to the silent node...
    real = enroll("real")
    Node.objects.filter(pk=real.node.pk).update(price_per_second_wei=10)  # dearer: the silent one is tried first
    job = wait_job(job, timeout=20)  # ...taken back after the accept deadline, and run elsewhere
    assert job.status == JobStatus.COMPLETED and job.node_id == real.node.pk
    assert job.excluded_nodes == [silent.node.public_id]
    assert Node.objects.get(pk=silent.node.pk).strikes == 1


def test_a_node_that_keeps_beating_but_never_got_the_frame_is_not_blamed(fake_node, dispatcher, monkeypatch):
    """The marketplace may lose a frame (a web process died with it) or deliver it late under a
    burst: a node that is plainly alive loses the attempt, not its slots or its place."""
    from jobs.dispatch import watchdog

    monkeypatch.setattr(watchdog, "ACCEPT_SECONDS", 1)
    alive = fake_node()
    alive.connect()
    job = make_job(dispatcher)
    first = alive.receive_type("job")
    time.sleep(0.5)  # "after the assignment" by the wall clock, which this machine slews by milliseconds
    alive.send({"type": "heartbeat", "running": []})  # alive, but it does not run the job
    second = alive.receive_type("job", timeout=15)  # taken back and given again: the node is not passed over
    assert (second["job_id"], second["attempt"]) == (first["job_id"], 2)
    job.refresh_from_db()
    assert job.excluded_nodes == [] and Node.objects.get(pk=alive.node.pk).strikes == 0
    assert "did not start the job" in job.attempts.get(number=1).error


def test_a_node_whose_results_are_slow_to_settle_is_heard_beating_meanwhile(fake_node, dispatcher, monkeypatch):
    """A burst of results may take the marketplace a while to settle: the node's heartbeats are
    recorded as they come, or the watchdog would take a busy node for a silent one and fail
    over every job it holds."""
    import threading

    from jobs.dispatch import node_socket

    busy = fake_node()
    busy.connect()
    job = make_job(dispatcher)
    frame = busy.receive_type("job")
    busy.send({"type": "accepted", "job_id": frame["job_id"], "attempt": 1, "node_job_id": "n1"})
    wait_job(job, (JobStatus.RUNNING,))
    settling, release = threading.Event(), threading.Event()

    def slow_result(**kwargs):
        settling.set()
        release.wait(20)
        raise node_socket.ForeignAttempt("not settled in this test")

    monkeypatch.setattr(node_socket, "attempt_result", slow_result)
    Node.objects.filter(pk=busy.node.pk).update(last_heartbeat_at=None)
    try:
        busy.send({"type": "result", "job_id": frame["job_id"], "attempt": 1, "result": {"status": "success"}})
        assert settling.wait(10)
        busy.send({"type": "heartbeat"})
        wait_for(lambda: Node.objects.get(pk=busy.node.pk).last_heartbeat_at is not None, timeout=5,
                 message="the heartbeat waited behind the result")
    finally:
        release.set()
    assert busy.receive_type("ack")["accepted"] is False  # and the result was still answered, in turn


def test_a_job_the_node_says_it_runs_is_not_taken_back_for_a_late_or_lost_accept(fake_node, dispatcher,
                                                                                   monkeypatch):
    """Under load the marketplace may read a node's "accepted" late, behind its other frames, or
    lose it: a node whose heartbeat lists the attempt holds it, and the job must not run twice,
    nor wait for an acceptance that never comes."""
    from jobs.dispatch import watchdog

    monkeypatch.setattr(watchdog, "ACCEPT_SECONDS", 60)  # nothing is taken back before the heartbeat lands
    slow = fake_node()
    slow.connect()
    job = make_job(dispatcher)
    frame = slow.receive_type("job")
    held = {"job_id": frame["job_id"], "attempt": frame["attempt"]}
    time.sleep(0.5)  # "after the assignment" by the wall clock, which this machine slews by milliseconds
    slow.send({"type": "heartbeat", "running": [held, {"job_id": "job_not_given_to_it", "attempt": 1}]})
    wait_for(lambda: Node.objects.get(pk=slow.node.pk).running_attempts == [[job.public_id, 1]], timeout=10,
             message="the heartbeat's attempts were not recorded (or a stranger's was)")
    monkeypatch.setattr(watchdog, "ACCEPT_SECONDS", 0)  # and now the "accepted" is overdue
    job = wait_job(job, (JobStatus.RUNNING, JobStatus.QUEUED), timeout=10)  # past the accept deadline
    assert (job.status, job.attempt_count, job.node_id) == (JobStatus.RUNNING, 1, slow.node.pk), job.status_reason
    assert "its heartbeat says so" in job.status_reason
    slow.send({"type": "accepted", **held, "node_job_id": "n1"})  # the late frame changes nothing
    slow.send({"type": "heartbeat", "running": []})
    wait_for(lambda: Node.objects.get(pk=slow.node.pk).running_attempts == [], timeout=5)
    job.refresh_from_db()
    assert (job.status, job.attempt_count) == (JobStatus.RUNNING, 1)
    assert [e.new_status for e in job.events.all()] == ["assigned", "running"]


def test_a_node_that_accepts_and_goes_quiet_is_timed_out_on_time(fake_node, dispatcher):
    quiet = fake_node()
    quiet.connect()
    started = time.monotonic()
    job = make_job(dispatcher, timeout_seconds=2)
    frame = quiet.receive_type("job")
    quiet.send({"type": "accepted", "job_id": frame["job_id"], "attempt": frame["attempt"], "node_job_id": "n1"})
    job = wait_job(job, timeout=15)
    assert job.status == JobStatus.FAILED and job.status_reason == "timed out after 2 s"
    assert time.monotonic() - started < 6
    cancel = quiet.receive_type("cancel")
    assert (cancel["job_id"], cancel["attempt"]) == (frame["job_id"], frame["attempt"])


def test_a_result_for_a_job_not_assigned_to_the_node_is_refused(fake_node, dispatcher):
    owner, intruder = fake_node(), fake_node()
    owner.connect()
    job = make_job(dispatcher)
    frame = owner.receive_type("job")
    intruder.connect()
    intruder.send({"type": "result", "job_id": frame["job_id"], "attempt": frame["attempt"],
                   "result": {"id": "x", "status": "success", "result": {"output": "forged"}}})
    assert intruder.receive_type("ack") == {"type": "ack", "job_id": job.public_id, "attempt": 1, "accepted": False}
    job.refresh_from_db()
    assert job.status == JobStatus.ASSIGNED and job.node_id == owner.node.pk and job.result is None


def test_a_receipt_that_does_not_parse_fails_the_attempt_once_and_counts_against_the_node(fake_node, dispatcher):
    bad = fake_node()
    bad.connect()
    job = make_job(dispatcher)
    frame = bad.receive_type("job")
    bad.send({"type": "accepted", "job_id": frame["job_id"], "attempt": 1, "node_job_id": "n1"})
    receipt = {"body": {"duration_ms": "abc"}, "hash": "0" * 64, "signature": "x", "signer": "y"}
    bad.send({"type": "result", "job_id": frame["job_id"], "attempt": 1,
              "result": {"id": "n1", "status": "success", "result": {"output": 1}, "receipt": receipt}})
    assert bad.receive_type("ack")["accepted"] is True
    job = wait_job(job, (JobStatus.QUEUED, *FINAL))
    assert job.status == JobStatus.QUEUED and job.excluded_nodes == [bad.node.public_id]
    assert job.attempts.get().status == JobAttempt.Status.LOST
    assert Node.objects.get(pk=bad.node.pk).strikes == 1


def test_frames_that_are_not_bounded_json_get_an_error_not_a_crash(fake_node):
    peer = fake_node()
    peer.connect()
    peer.ws.send("[" * 100_000 + "]" * 100_000)
    assert "deeper" in peer.receive_type("error")["error"]
    peer.ws.send("not json")
    assert peer.receive_type("error")["type"] == "error"
    peer.send({"type": "hello", "running": "lots", "results": {"x": 1}})  # not lists: nothing held
    peer.send({"type": "hello", "running": [7, {"job_id": "j"}, None], "results": ["x"]})
    before = Node.objects.get(pk=peer.node.pk).last_heartbeat_at
    peer.send({"type": "heartbeat", "running": []})  # the socket is still up and served
    wait_for(lambda: Node.objects.get(pk=peer.node.pk).last_heartbeat_at > before, message="the beat was not served")
    assert Node.objects.get(pk=peer.node.pk).channel_name != ""


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


def test_a_hello_with_a_report_that_does_not_check_is_refused_and_the_socket_closed(fake_node):
    from websockets.exceptions import ConnectionClosed

    peer = fake_node()
    peer.connect(capacity=10**9)
    assert "capacity" in peer.receive_type("error")["error"]
    with pytest.raises(ConnectionClosed):
        peer.receive(timeout=5)
    wait_for(lambda: Node.objects.get(pk=peer.node.pk).channel_name == "", message="the socket stayed open")


def test_a_nodes_frames_cost_no_hop_into_the_shared_sync_thread(enroll, dispatcher, monkeypatch):
    import channels.consumer

    hops = []
    original = channels.consumer.aclose_old_connections

    async def counted():
        hops.append(1)
        await original()

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counted)
    enroll("alpha")
    jobs = [make_job(dispatcher, input=str(i)) for i in range(3)]
    assert [wait_job(job).status for job in jobs] == [JobStatus.COMPLETED] * 3
    assert hops == [], "Channels hopped into the shared sync thread before a message"


def test_a_result_that_frees_a_slot_places_the_waiting_job_there_without_a_worker(enroll, dispatcher, monkeypatch):
    from jobs import tasks
    from jobs.dispatch import node_socket

    monkeypatch.setattr(node_socket, "schedule_here", tasks.schedule_here)  # as in production
    agent = enroll("alpha", capacity=1)
    first = make_job(dispatcher, model="sleep", input={"seconds": 1})
    wait_for(lambda: Job.objects.get(pk=first.pk).status == JobStatus.RUNNING, timeout=15)
    waiting = make_job(model="echo")  # no message for it: only the freed slot can place it
    asked = len(dispatcher.sent)
    assert wait_job(first).status == JobStatus.COMPLETED
    second = wait_job(waiting)
    assert (second.status, second.node_id) == (JobStatus.COMPLETED, agent.node.pk)
    assert len(dispatcher.sent) == asked, "the freed slot asked a worker instead of passing itself"


def test_a_model_a_node_says_it_cannot_run_is_not_offered_nor_given_to_it(fake_node, alice_api):
    from jobs.catalogue import catalogue

    peer = fake_node(models=("echo", "all-MiniLM-L6-v2"))
    peer.connect(unavailable={"all-MiniLM-L6-v2": "not installed", "never-advertised": "x"})
    wait_for(lambda: Node.objects.get(pk=peer.node.pk).unavailable_models == {"all-MiniLM-L6-v2": "not installed"},
             message="the hello's report was not recorded")
    offered = [entry.model for entry in catalogue()]
    assert "echo" in offered and "all-MiniLM-L6-v2" not in offered, "a model no node can run now is not offered"
    refused = alice_api.post("/v1/jobs", {"model": "all-MiniLM-L6-v2", "input": {"text": "x"}}, format="json")
    assert refused.status_code == 422 and "no node" in refused.json()["error"]["detail"], refused.json()
    echo = alice_api.post("/v1/jobs", {"model": "echo", "input": "x"}, format="json")
    assert echo.status_code == 201
    assert peer.receive_type("job")["job_id"] == echo.json()["job_id"], "the node still gets what it can run"
    peer.close()

    again = fake_node(models=("echo", "all-MiniLM-L6-v2"))
    Node.objects.filter(pk=again.node.pk).update(unavailable_models={"all-MiniLM-L6-v2": "not installed"})
    again.connect()  # a hello that reports nothing: it can run everything again (installed since)
    wait_for(lambda: Node.objects.get(pk=again.node.pk).unavailable_models == {}, message="the report stayed")


def test_a_nodes_gpu_figures_ride_its_heartbeat_to_the_miner_console(fake_node):
    from django.contrib.auth import get_user_model
    from django.test import Client

    peer = fake_node()
    peer.connect()
    gpus = [{"index": 0, "utilization_percent": 37, "memory_used_mib": 10240, "memory_total_mib": 81920,
             "temperature_c": 54, "fan": "loud"},
            {"index": 1, "utilization_percent": None, "memory_used_mib": 812, "memory_total_mib": 81920,
             "temperature_c": True}]
    peer.send({"type": "heartbeat", "running": [], "gpus": gpus})
    wait_for(lambda: Node.objects.get(pk=peer.node.pk).gpu_stats, message="the GPU figures were not recorded")
    stats = Node.objects.get(pk=peer.node.pk).gpu_stats
    assert stats[0] == {"index": 0, "utilization_percent": 37, "memory_used_mib": 10240, "memory_total_mib": 81920,
                        "temperature_c": 54}, "only the known figures, as whole numbers"
    assert stats[1]["temperature_c"] is None and stats[1]["utilization_percent"] is None

    client = Client()
    miner = peer.node.miner
    miner.user = get_user_model().objects.create_user("gpu-miner")
    miner.save(update_fields=["user"])
    client.force_login(miner.user)
    page = client.get("/miner/").content.decode()
    assert "GPU 0: 37% busy, 10.0 GiB of 80.0 GiB, 54 °C" in page and "GPU 1: busy –, 812 MiB of 80.0 GiB" in page

    peer.send({"type": "heartbeat", "running": [], "gpus": "lots"})
    assert "gpus must be a list" in peer.receive_type("error")["error"]
