"""Rate limit, bounded pending jobs and result retention: the agent's memory cannot run away."""
import time

import requests

from tests.support.agent import start_agent

ECHO = {"id": "echo", "entrypoint": "nodes.agent.builtin:echo"}
SLEEP = {"id": "sleep", "entrypoint": "nodes.agent.builtin:sleep", "workers": 2}


def test_the_rate_limit_answers_429_with_retry_after(tmp_path):
    agent = start_agent(tmp_path, {"containers": [ECHO], "rate_limit": {"num_requests": 5, "period": 60}})
    try:
        statuses = [requests.get(agent.url + "/info", timeout=5).status_code for _ in range(5)]
        assert statuses == [200] * 5
        refused = requests.get(agent.url + "/info", timeout=5)
        assert refused.status_code == 429
        assert refused.json()["error"] == "Too many requests"
        assert int(refused.headers["Retry-After"]) >= 1
    finally:
        agent.stop()


def test_pending_jobs_are_bounded(tmp_path):
    agent = start_agent(tmp_path, {"containers": [SLEEP], "max_pending_jobs": 2})
    try:
        agent.submit(["sleep"], {"seconds": 5})
        agent.submit(["sleep"], {"seconds": 5})
        refused = agent.post("/api/jobs", {"containers": ["sleep"], "data": {"seconds": 5}})
        assert refused.status_code == 503
        assert refused.json() == {"error": "Node at capacity", "params": {"pending": 2, "limit": 2}}
        batch = agent.post("/api/jobs/batch", [{"containers": ["sleep"], "data": {}}]).json()
        assert batch == [{"error": "Node at capacity", "params": {"pending": 2, "limit": 2}}]
        assert agent.get("/info").json()["pending"]["offchain"] == 2
    finally:
        agent.stop()


def test_finished_results_are_dropped_after_their_ttl(tmp_path):
    agent = start_agent(tmp_path, {"containers": [ECHO], "result_ttl_seconds": 0.5})
    try:
        job_id = agent.submit(["echo"], {})
        assert agent.wait(job_id)["status"] == "success"
        time.sleep(0.7)
        agent.submit(["echo"], {})  # any finish sweeps out expired results
        time.sleep(0.2)
        assert agent.get("/api/jobs", params={"id": job_id}).json() == []
        assert job_id not in agent.get("/api/jobs").json()
    finally:
        agent.stop()


def test_at_most_max_finished_jobs_are_kept(tmp_path):
    agent = start_agent(tmp_path, {"containers": [ECHO], "max_finished_jobs": 3})
    try:
        ids = [agent.submit(["echo"], {"n": n}) for n in range(6)]
        for job_id in ids:
            agent.get("/api/jobs", params={"id": job_id})
        time.sleep(0.3)
        kept = agent.get("/api/jobs", params={"pending": "false"}).json()
        assert kept == ids[-3:]
    finally:
        agent.stop()


def test_another_clients_jobs_are_not_listed(agent):
    """Jobs belong to the address that made them, as on Infernet."""
    from nodes.agent.config import load_config
    from nodes.agent.jobs import Job, JobStore

    store = JobStore(load_config())
    store.add(Job(id="a", client_ip="127.0.0.1", containers=["echo"], data={}))
    store.add(Job(id="b", client_ip="10.0.0.7", containers=["echo"], data={}))
    assert store.ids_for("127.0.0.1") == ["a"]
    assert store.get("b", "127.0.0.1") is None
    assert store.get("b", "10.0.0.7").id == "b"


def test_allowed_ips_admit_the_listed_networks():
    from nodes.agent.config import load_config
    from nodes.agent.errors import Forbidden
    from nodes.agent.guards import parse_job_request

    config = load_config(containers=[{"id": "private", "entrypoint": "m:f", "allowed_ips": ["10.0.0.0/8", "::1"]}])
    job = {"containers": ["private"], "data": {}}
    assert parse_job_request(job, config, "10.20.30.40").containers == ["private"]
    assert parse_job_request(job, config, "::1").containers == ["private"]
    try:
        parse_job_request(job, config, "192.0.2.1")
    except Forbidden as refused:
        assert refused.params == {"container": "private", "address": "192.0.2.1"}
    else:
        raise AssertionError("an address outside allowed_ips must be refused")


def test_the_marketplace_is_not_held_to_address_allow_lists():
    from nodes.agent.config import load_config
    from nodes.agent.guards import parse_job_request

    config = load_config(containers=[{"id": "private", "entrypoint": "m:f", "allowed_ips": ["10.0.0.0/8"]}])
    job = {"containers": ["private"], "data": {}}
    assert parse_job_request(job, config, "marketplace", trusted=True).containers == ["private"]
