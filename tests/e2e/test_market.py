"""The whole marketplace as a user meets it: runmarket, real agents, real workers, live output.

On the embedded default the worker runs inside runmarket; where CI provides
PostgreSQL, RabbitMQ and Redis, two ``rundramatiq`` processes do the work.
"""
import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.support.agent import PROJECT_ROOT
from tests.support.market import start_market


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    running = start_market(tmp_path_factory.mktemp("market"))
    yield running
    running.stop()


def test_the_printed_curl_line_works_as_printed(market):
    line = next(l.strip() for l in market.log().splitlines() if l.strip().startswith("curl -s -X POST"))
    output = subprocess.run(line, shell=True, capture_output=True, text=True, timeout=30).stdout
    job_id = json.loads(output)["job_id"]
    job = market.wait(job_id)
    assert job["status"] == "completed" and job["result"] == {"input": "hello"}
    assert job["receipt"]["verified"] is True and job["miner_id"].startswith("miner_")


def test_an_output_larger_than_a_mebibyte_on_the_wire_comes_back_whole(market):
    """The result frame of a large output is far bigger than the request that made it (non-ASCII
    text is escaped six bytes a character): the node socket must carry it, not cut it off."""
    text = "é" * 400_000  # 800 kB in the request, as UTF-8; over 2 MB in the node's result frame
    body = json.dumps({"model": "echo", "input": text}, ensure_ascii=False).encode()
    response = requests.post(f"{market.url}/v1/jobs", data=body, timeout=30,
                             headers={**market.headers(), "Content-Type": "application/json"})
    assert response.status_code == 201, response.text
    job = market.wait(response.json()["job_id"], timeout=60)
    assert job["status"] == "completed" and job["attempts"] == 1, job["status_reason"]
    assert job["result"] == {"input": text}


def test_a_chain_of_containers_runs(market):
    job = market.wait(market.submit({"containers": ["tokens", "echo"], "input": {"text": "a b c"}}))
    assert job["status"] == "completed" and job["result"] == {"text": "a b c", "tokens": 3}


def _sse_events(market, job_id, key=None):
    events = []
    with requests.get(f"{market.url}/v1/jobs/{job_id}/events", headers=market.headers(key), stream=True, timeout=30) as r:
        assert r.status_code == 200 and r.headers["Content-Type"] == "text/event-stream"
        for line in r.iter_lines(decode_unicode=True):
            if line.startswith("data: "):
                events.append((time.monotonic(), json.loads(line[6:])))
    return events


def test_server_sent_events_deliver_status_and_output_as_it_happens(market):
    job_id = market.submit({"model": "tokens", "input": {"text": "one two three four five", "delay": 0.25}})
    events = _sse_events(market, job_id)
    kinds = [e["type"] for _, e in events]
    assert kinds[0] == "status" and kinds[-1] == "status"
    final = events[-1][1]
    assert final["status"] == "completed" and final["result"] == {"text": "one two three four five", "tokens": 5}
    outputs = [(t, e["data"]) for t, e in events if e["type"] == "output"]
    assert "".join(text for _, text in outputs) == "one two three four five"
    assert outputs[-1][0] - outputs[0][0] > 0.5, "chunks must arrive as produced, not all at the end"
    assert any(e["type"] == "progress" for _, e in events) or final["progress"] == 100


def test_the_event_stream_refuses_strangers_in_the_error_shape(market):
    job_id = market.submit({"model": "echo", "input": "x"})
    anonymous = requests.get(f"{market.url}/v1/jobs/{job_id}/events", timeout=10)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthorized"
    stranger = market.manage("createapikey", "--customer", "mallory")
    other = requests.get(f"{market.url}/v1/jobs/{job_id}/events", headers=market.headers(stranger), timeout=10)
    assert other.status_code == 404 and other.json()["error"]["code"] == "job_not_found"


def test_a_websocket_delivers_the_same_events(market):
    import websockets

    job_id = market.submit({"model": "tokens", "input": {"text": "alpha beta gamma", "delay": 0.2}})
    ws_url = market.url.replace("http://", "ws://") + f"/ws/jobs/{job_id}/"

    async def collect():
        received = []
        async with websockets.connect(ws_url, extra_headers=market.headers()) as socket:
            while True:
                event = json.loads(await asyncio.wait_for(socket.recv(), 20))
                received.append(event)
                if event["type"] == "status" and event["status"] in ("completed", "failed"):
                    return received

    events = asyncio.run(collect())
    assert events[0]["type"] == "status"
    assert "".join(e["data"] for e in events if e["type"] == "output") == "alpha beta gamma"
    assert events[-1]["status"] == "completed"


def test_a_websocket_without_a_valid_key_is_refused(market):
    import websockets

    job_id = market.submit({"model": "echo", "input": "x"})
    ws_url = market.url.replace("http://", "ws://") + f"/ws/jobs/{job_id}/"

    async def attempt(headers):
        try:
            async with websockets.connect(ws_url, extra_headers=headers) as socket:
                await socket.recv()
        except websockets.exceptions.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
        except websockets.exceptions.InvalidStatusCode as refused:
            return refused.status_code
        return "accepted"

    assert asyncio.run(attempt({})) in (403, 4401)
    stranger = market.manage("createapikey", "--customer", "eve")
    assert asyncio.run(attempt(market.headers(stranger))) in (403, 4404)


def test_a_job_no_node_can_take_expires_saying_why(market):
    job = market.wait(market.submit({"model": "echo", "input": "x", "requirements": {"gpu_type": "h100", "gpu_count": 1}}),
                      timeout=30)
    assert job["status"] == "expired"
    assert job["status_reason"].startswith("no online node offers gpu_type h100")


def test_the_rate_limit_is_hit_per_key(market):
    key = market.manage("createapikey", "--customer", "limited")
    market.manage("shell", "-c", "from marketplace.models import Customer; "
                  "Customer.objects.filter(name='limited').update(rate_limit_per_minute=3)")
    statuses = [requests.get(f"{market.url}/v1/jobs", headers=market.headers(key), timeout=10).status_code
                for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert requests.get(f"{market.url}/v1/jobs", headers=market.headers(), timeout=10).status_code == 200


@pytest.fixture(scope="module")
def two_node_market(tmp_path_factory):
    base = tmp_path_factory.mktemp("two-nodes")
    running = start_market(base, agent=False)
    running.add_agent(base, "north")
    running.add_agent(base, "south")
    yield running
    running.stop()


def _agent_for(market, node_id):
    for agent in market.agents:
        if agent.process.poll() is None and agent.get("/info").json()["node"]["id"] == node_id:
            return agent
    raise AssertionError(f"no agent is node {node_id}")


def test_a_node_killed_mid_job_and_the_job_finishes_on_another(two_node_market):
    market = two_node_market
    job_id = market.submit({"model": "sleep", "input": {"seconds": 3}})
    running = market.wait(job_id, statuses=("running",), timeout=30)
    victim = _agent_for(market, running["node_id"])
    os.kill(victim.process.pid, signal.SIGKILL)
    job = market.wait(job_id, timeout=60)
    assert job["status"] == "completed", job
    assert job["node_id"] != running["node_id"] and job["attempts"] == 2
    assert job["result"] == {"slept": 3}


def test_a_running_job_is_cancelled_on_its_node(two_node_market):
    market = two_node_market
    job_id = market.submit({"model": "sleep", "input": {"seconds": 30}})
    running = market.wait(job_id, statuses=("running",), timeout=30)
    agent = _agent_for(market, running["node_id"])
    response = requests.delete(f"{market.url}/v1/jobs/{job_id}", headers=market.headers(), timeout=10)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    deadline = time.monotonic() + 10
    while agent.get("/info").json()["pending"]["offchain"] != 0:
        assert time.monotonic() < deadline, "the node should have stopped the job"
        time.sleep(0.1)


def test_the_timeout_is_enforced(two_node_market):
    market = two_node_market
    job = market.wait(market.submit({"model": "sleep", "input": {"seconds": 30}, "timeout_seconds": 1}), timeout=30)
    assert job["status"] == "failed" and job["status_reason"] == "timed out after 1 s"


@pytest.mark.skipif(
    not __import__("tests.support.market", fromlist=["x"]).services_configured(),
    reason="needs a shared broker (CI's PostgreSQL run); the embedded race is tested in tests/jobs/test_dispatch.py",
)
def test_two_rundramatiq_workers_racing_for_the_same_jobs_run_each_once(two_node_market):
    market = two_node_market

    def jobs_on_nodes() -> int:
        """Attempts the scheduler gave to nodes: one frame down a socket each."""
        return int(market.shell("from jobs.models import JobAttempt; print(JobAttempt.objects.count())"))

    before = jobs_on_nodes()
    job_ids = [market.submit({"model": "sleep", "input": {"seconds": 0.3}}) for _ in range(6)]
    # deliver every job's dispatch three more times, so both worker processes grab each at once
    market.shell(
        "from jobs.models import Job; from jobs.tasks import dispatch_job; "
        f"[dispatch_job.send(pk) for pk in Job.objects.filter(public_id__in={job_ids!r}).values_list('pk', flat=True) "
        "for _ in range(3)]"
    )
    jobs = [market.wait(job_id, timeout=60) for job_id in job_ids]
    assert all(job["status"] == "completed" and job["attempts"] == 1 for job in jobs), jobs
    assert jobs_on_nodes() - before == len(job_ids), "each job was given to a node exactly once"


def test_a_completed_job_is_billed_and_its_receipt_verifies_with_the_nodes_key(market):
    from wire.signing import verify_receipt

    before = requests.get(f"{market.url}/v1/billing/account", headers=market.headers(), timeout=10).json()
    job = market.wait(market.submit({"model": "sleep", "input": {"seconds": 1}}))
    assert job["status"] == "completed"
    bill = job["billing"]
    assert bill["status"] == "settled"
    charged = int(bill["charged_price_wei"])
    # the reservation covers the whole timeout; the charge is the second the node signed
    assert 0 < charged <= int(bill["reserved_price_wei"]) and int(bill["quoted_price_wei"]) <= int(
        bill["reserved_price_wei"])
    assert int(bill["payout_price_wei"]) + int(bill["fee_price_wei"]) == charged
    after = requests.get(f"{market.url}/v1/billing/account", headers=market.headers(), timeout=10).json()
    assert int(after["balance"]) == int(before["balance"]) - charged
    receipt = requests.get(f"{market.url}{job['receipt']['url']}", headers=market.headers(), timeout=10).json()
    signed = {"body": receipt["receipt"], "hash": receipt["receipt_hash"], "signature": receipt["signature"]}
    assert verify_receipt(signed, receipt["node_public_key"])
    assert int(receipt["receipt"]["duration_ms"]) >= 1000


def test_a_job_is_charged_all_the_time_its_node_signed_at_its_nodes_rate_whatever_its_quote(market):
    """The bug issue 13 opened with: the reservation was the quote, so a job that ran longer than
    its model's median was charged the quote. Warmed with short runs, sleep's median is short."""
    for _ in range(5):
        market.wait(market.submit({"model": "sleep", "input": {"seconds": 0.1}}))
    time.sleep(2.5)  # past the outlook a submit keeps (jobs.selectors.OUTLOOK_SECONDS): the quote sees them
    submitted = requests.post(f"{market.url}/v1/jobs", headers=market.headers(), timeout=10, json={
        "model": "sleep", "input": {"seconds": 4}, "timeout_seconds": 60}).json()
    job = market.wait(submitted["job_id"])
    assert job["status"] == "completed", job
    receipt = requests.get(f"{market.url}{job['receipt']['url']}", headers=market.headers(), timeout=10).json()
    duration_ms = int(receipt["receipt"]["duration_ms"])
    rate = 1_000_000_000  # the default policy's CPU rate, which the local agent (no price of its own) charges
    bill = job["billing"]
    assert bill["quoted_price_wei"] == submitted["estimated_cost_wei"], "the quote is unchanged"
    assert int(bill["charged_price_wei"]) == duration_ms * rate // 1000 > int(bill["quoted_price_wei"])


def test_the_private_cli_seals_a_prompt_runs_it_and_prints_the_opened_result(market, tmp_path):
    """The command a customer runs: pinned keys, a sealed prompt, the real workers, the opened answer."""
    pins = tmp_path / "known_nodes.json"
    command = [sys.executable, "-m", "privacy.cli", "--url", market.url, "--api-key", market.api_key,
               "--pin-file", str(pins), "run", "--model", "echo", "a private prompt, in plain words"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"input": "a private prompt, in plain words"}
    job_id = done.stderr.split()[1]
    record = requests.get(f"{market.url}/v1/private-inference/jobs/{job_id}", headers=market.headers(), timeout=10).json()
    assert record["status"] == "completed" and record["billing"]["status"] == "settled"
    assert "plain words" not in json.dumps(record) and "plain words" not in market.log()
    assert list(json.loads(pins.read_text())) == [record["node_id"]], "the node's identity was pinned on first use"

    listed = subprocess.run(command[:-4] + ["nodes"], capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT)
    assert listed.returncode == 0 and record["node_id"] in listed.stdout


def test_the_printed_private_line_works_as_printed(market, tmp_path):
    line = next(l.strip() for l in market.log().splitlines() if "-m privacy.cli" in l)
    done = subprocess.run(line, shell=True, capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT,
                          env={**os.environ, "HOME": str(tmp_path)})  # pins go under this HOME
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"input": "a secret prompt"}
