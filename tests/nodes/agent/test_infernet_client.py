"""The published infernet-client, unmodified, drives a running agent."""
import asyncio
import uuid

import pytest
from infernet_client.error import APIError
from infernet_client.node import NodeClient


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def client(agent):
    return NodeClient(agent.url)


def test_health(client):
    assert run(client.health()) is True


def test_info_lists_containers_pending_and_chain(client):
    info = run(client.get_info())
    assert info["version"] == "1.4.0"
    ids = {c["id"] for c in info["containers"]}
    assert {"echo", "sleep", "tokens", "upper"} <= ids
    echo = next(c for c in info["containers"] if c["id"] == "echo")
    assert set(echo) == {"id", "external", "image", "description"}
    assert set(info["pending"]) == {"offchain", "onchain"}
    assert info["chain"] == {"enabled": False, "address": ""}


def test_resources_and_model_support(client):
    resources = run(client.get_resources())
    echo = resources["echo"]
    assert echo["service_id"] == "echo"
    assert echo["compute_capability"][0]["models"] == [{"owner": "", "name": "echo"}]
    base = echo["hardware_capabilities"][0]
    assert base["cpu_info"]["num_cores"] >= 1

    support = run(client.check_model_support("echo"))
    assert support["echo"] == {"supported": True}
    assert support["sleep"]["supported"] is False
    assert "not served" in support["sleep"]["error"]


def test_a_job_runs_and_its_result_is_fetched(client):
    job_id = run(client.request_job({"containers": ["upper"], "data": {"text": "hi"}}))
    uuid.UUID(job_id)
    result = run(client.get_job_result_sync(job_id, retries=20))
    assert result["status"] == "success"
    assert result["result"] == {"container": "upper", "output": {"text": "HI"}}


def test_a_batch_with_a_bad_item_fails_only_that_item(client):
    responses = run(
        client.request_jobs(
            [
                {"containers": ["echo"], "data": {"n": 1}},
                {"containers": ["no-such-container"], "data": {}},
                {"containers": ["echo"], "data": {"n": 3}},
            ]
        )
    )
    assert "id" in responses[0] and "id" in responses[2]
    assert responses[1] == {"error": "Container not supported", "params": {"container": "no-such-container"}}
    results = run(client.get_job_results([responses[0]["id"], responses[2]["id"]]))
    assert len(results) == 2


def test_results_with_intermediate(client, agent):
    job_id = run(client.request_job({"containers": ["upper", "suffix"], "data": {"text": "chain"}}))
    agent.wait(job_id)
    (with_intermediate,) = run(client.get_job_results([job_id], intermediate=True))
    assert with_intermediate["result"] == {"container": "suffix", "output": {"text": "CHAIN!"}}
    assert with_intermediate["intermediate_results"] == [{"container": "upper", "output": {"text": "CHAIN"}}]
    (without,) = run(client.get_job_results([job_id]))
    assert "intermediate_results" not in without


def test_pending_filter(client, agent):
    slow = run(client.request_job({"containers": ["sleep"], "data": {"seconds": 2}}))
    quick = run(client.request_job({"containers": ["echo"], "data": {}}))
    agent.wait(quick)
    pending = run(client.get_jobs(pending=True))
    finished = run(client.get_jobs(pending=False))
    everything = run(client.get_jobs())
    assert slow in pending and slow not in finished
    assert quick in finished and quick not in pending
    assert {slow, quick} <= set(everything)


def test_stream_yields_the_job_id_then_output_as_produced(client, agent):
    async def collect():
        chunks = []
        async for chunk in client.request_stream(
            {"containers": ["tokens"], "data": {"text": "one two three four", "delay": 0.05}}
        ):
            chunks.append(chunk)
        return chunks

    chunks = run(collect())
    job_id = chunks[0]
    uuid.UUID(job_id)
    body = b"".join(chunks[1:]).decode()
    assert body == "one two three four"
    assert len(chunks) > 2, "output should arrive in several chunks, as produced"
    result = agent.wait(job_id)
    assert result["result"]["output"] == {"text": "one two three four", "tokens": 4}


def test_an_error_comes_back_as_an_api_error(client):
    with pytest.raises(APIError) as raised:
        run(client.request_job({"containers": ["suffix"], "data": {}}))
    assert raised.value.status_code == 400
    assert raised.value.message == "First container must be external"
    assert raised.value.params == {"first_container": "suffix"}


def test_record_status_from_loopback(client, agent):
    job_id = str(uuid.uuid4())
    run(client.record_status(job_id, "running", {"containers": ["echo"], "data": {}}))
    assert job_id in run(client.get_jobs(pending=True))
    run(client.record_status(job_id, "success", {"containers": ["echo"], "data": {}}))
    assert job_id in run(client.get_jobs(pending=False))
