"""Every endpoint answers bad input with a JSON 4xx in Infernet's error shape, never a 500."""
import json

import pytest
import requests

JOB = {"containers": ["echo"], "data": {}}
SUB = {
    "subscription": {"owner": "0x0", "container_id": "echo", "active_at": 0, "frequency": 1, "period": 0,
                     "redundancy": 1, "max_gas_price": 0, "max_gas_limit": 0},
    "signature": {"nonce": 0, "expiry": 0, "v": 27, "r": 1, "s": 1},
    "data": {},
}

CASES = [
    # (method, path, raw body or json, expected status, expected error)
    ("POST", "/api/jobs", b"{not json", 400, "Could not parse request body as JSON"),
    ("POST", "/api/jobs", b"", 400, "Could not parse request body as JSON"),
    ("POST", "/api/jobs", b"\xff\xfe", 400, "Could not parse request body as JSON"),
    ("POST", "/api/jobs", [], 400, "Job request must be a JSON object"),
    ("POST", "/api/jobs", "a string", 400, "Job request must be a JSON object"),
    ("POST", "/api/jobs", {"data": {}}, 400, "containers must be a list of container IDs"),
    ("POST", "/api/jobs", {"containers": "echo", "data": {}}, 400, "containers must be a list of container IDs"),
    ("POST", "/api/jobs", {"containers": [1], "data": {}}, 400, "containers must be a list of container IDs"),
    ("POST", "/api/jobs", {"containers": [], "data": {}}, 400, "No containers specified"),
    ("POST", "/api/jobs", {"containers": ["echo"]}, 400, "data is required"),
    ("POST", "/api/jobs", {"containers": ["echo"], "data": [1]}, 400, "data must be a JSON object"),
    ("POST", "/api/jobs", {**JOB, "requires_proof": "yes"}, 400, "requires_proof must be a boolean"),
    ("POST", "/api/jobs", {**JOB, "surprise": 1}, 400, "Unknown fields in job request"),
    ("POST", "/api/jobs", {"containers": ["nope"], "data": {}}, 400, "Container not supported"),
    ("POST", "/api/jobs", {"containers": ["suffix"], "data": {}}, 400, "First container must be external"),
    ("POST", "/api/jobs", {**JOB, "requires_proof": True}, 400, "Container does not generate proof"),
    ("POST", "/api/jobs", {"containers": ["private"], "data": {}}, 403, "Container not allowed for address"),
    ("POST", "/api/jobs", SUB, 400, "Chain not enabled"),
    ("POST", "/api/jobs/batch", JOB, 400, "Expected a list"),
    ("POST", "/api/jobs/batch", b"[", 400, "Could not parse request body as JSON"),
    ("POST", "/api/jobs/stream", b"nope", 400, "Could not parse request body as JSON"),
    ("POST", "/api/jobs/stream", {"containers": ["nope"], "data": {}}, 400, "Container not supported"),
    ("POST", "/api/jobs/stream", SUB, 400, "Streaming only supported for JobRequest requests"),
    ("GET", "/api/jobs?id=not-a-uuid", None, 400, "Invalid job id"),
    ("GET", "/api/jobs?pending=maybe", None, 400, "pending must be true or false"),
    ("GET", "/api/jobs?id=7f3c2a10-5b7e-4c1d-9a2e-0d6f1b8c4e21&intermediate=perhaps", None, 400,
     "intermediate must be true or false"),
    ("GET", "/resources?model_id=", None, 400, "model_id must not be empty"),
    ("DELETE", "/api/jobs/not-a-uuid", None, 400, "Invalid job id"),
    ("DELETE", "/api/jobs/7f3c2a10-5b7e-4c1d-9a2e-0d6f1b8c4e21", None, 404, "Job not found"),
    ("PUT", "/api/status", b"{", 400, "Could not parse request body as JSON"),
    ("PUT", "/api/status", {"id": "x", "status": "running", "containers": ["echo"]}, 400, "Invalid job id"),
    ("PUT", "/api/status", {"id": "7f3c2a10-5b7e-4c1d-9a2e-0d6f1b8c4e21", "status": "done", "containers": ["echo"]},
     400, "Status is invalid"),
    ("PUT", "/api/status", {"id": "7f3c2a10-5b7e-4c1d-9a2e-0d6f1b8c4e21", "status": "success"}, 400,
     "containers must be a non-empty list of container IDs"),
    ("GET", "/no/such/route", None, 404, "Not found"),
    ("POST", "/health", None, 405, "Method not allowed"),
    ("DELETE", "/info", None, 405, "Method not allowed"),
    ("GET", "/api/jobs/batch", None, 405, "Method not allowed"),
    ("PUT", "/api/jobs", None, 405, "Method not allowed"),
]


@pytest.mark.parametrize("method,path,body,status,error", CASES, ids=[f"{c[0]} {c[1]} {c[4]}" for c in CASES])
def test_bad_input_gets_a_json_4xx(agent, method, path, body, status, error):
    kwargs = {}
    if isinstance(body, bytes):
        kwargs["data"] = body
        kwargs["headers"] = {"Content-Type": "application/json"}
    elif body is not None:
        kwargs["json"] = body
    response = requests.request(method, agent.url + path, timeout=10, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    payload = response.json()
    assert payload["error"] == error
    assert set(payload) <= {"error", "params"}


def test_an_oversized_body_is_a_json_413(tmp_path):
    from tests.support.agent import start_agent

    agent = start_agent(tmp_path, {"max_body_bytes": 1024, "containers": [{"id": "echo", "entrypoint": "nodes.agent.builtin:echo"}]})
    try:
        response = agent.post("/api/jobs", {"containers": ["echo"], "data": {"blob": "x" * 5000}})
        assert response.status_code == 413
        assert response.json() == {"error": "Request body too large", "params": {"limit": 1024}}
        assert agent.get("/health").status_code == 200
    finally:
        agent.stop()


def test_a_batch_reports_each_bad_item_in_place(agent):
    response = agent.post(
        "/api/jobs/batch",
        [JOB, {"containers": ["nope"], "data": {}}, "junk", SUB, {"containers": ["suffix"], "data": {}}, JOB],
    )
    assert response.status_code == 200
    items = response.json()
    assert [("id" in item) for item in items] == [True, False, False, False, False, True]
    assert items[1] == {"error": "Container not supported", "params": {"container": "nope"}}
    assert items[2] == {"error": "Job request must be a JSON object"}
    assert items[3] == {"error": "Chain not enabled"}
    assert items[4]["error"] == "First container must be external"


def _request_from(address: str, method: str, path: str, body: bytes, tmp_path):
    """Run one request through the real app and middlewares, as if it came from ``address``."""
    import asyncio
    from unittest import mock

    from aiohttp.test_utils import make_mocked_request
    from aiohttp.streams import StreamReader

    from nodes.agent.config import load_config
    from nodes.agent.server import build_app, build_state, json_errors, put_status

    state = build_state(load_config(), tmp_path)
    app = build_app(state)

    async def go():
        transport = mock.Mock()
        transport.get_extra_info.side_effect = lambda name, default=None: (address, 4321) if name == "peername" else default
        protocol = mock.Mock(_reading_paused=False)
        payload = StreamReader(protocol, 2**16, loop=asyncio.get_running_loop())
        payload.feed_data(body)
        payload.feed_eof()
        request = make_mocked_request(method, path, app=app, transport=transport, payload=payload)
        return await json_errors(request, put_status)

    return asyncio.run(go())


def test_status_updates_are_refused_from_outside_loopback(tmp_path):
    body = json.dumps({"id": "7f3c2a10-5b7e-4c1d-9a2e-0d6f1b8c4e21", "status": "running", "containers": ["echo"]})
    refused = _request_from("10.1.2.3", "PUT", "/api/status", body.encode(), tmp_path)
    assert refused.status == 403
    assert json.loads(refused.body) == {"error": "Unauthorized"}
    accepted = _request_from("::1", "PUT", "/api/status", body.encode(), tmp_path)
    assert accepted.status == 200


def test_responses_are_json_even_for_internal_errors(agent):
    """The JSON rendering of an unexpected exception, checked in-process."""
    import asyncio

    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from nodes.agent.server import json_errors

    async def broken(request):
        raise RuntimeError("boom")

    async def check():
        response = await json_errors(make_mocked_request("GET", "/x"), broken)
        return response

    response = asyncio.run(check())
    assert isinstance(response, web.Response)
    assert response.status == 500
    assert json.loads(response.body) == {"error": "Internal server error"}
