"""Hostile bodies on every JSON surface of a running marketplace and its node agent.

Each is refused with a 4xx in that surface's own error shape (the API's problem, the
Infernet gateway's and the agent's ``{"error": ...}``), and the process answers the next
request: a body deep enough to overflow a parser's C stack is refused before parsing
(``wire.bounded_json``), and nothing raised the interpreter's recursion limit.
"""
import pytest
import requests

from tests.support.market import start_market

LIMIT = 1024 * 1024  # the market's MAX_REQUEST_BYTES here: the deep bodies are well inside it

HOSTILE = {
    "100,000 levels deep": b'{"token":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "one level past the limit": b'{"model":"echo","input":' + b"[" * 64 + b"]" * 64 + b"}",
    "NaN": b'{"model":"echo","containers":["echo"],"input":NaN,"data":NaN}',
    "1e400": b'{"model":"echo","containers":["echo"],"input":1e400,"data":{"x":1e400}}',
    "a lone surrogate": b'{"model":"echo","containers":["echo"],"input":"\\ud800","data":{"x":"\\ud800"}}',
    "NUL": b'{"model":"echo","containers":["echo"],"input":"a\\u0000","data":{"x":"\\u0000"}}',
    "not JSON": b'{"model":',
    "invalid UTF-8": b'{"model":"\xff\xfe"}',
    "the wrong type": b"[1, 2, 3]",
    "wide": b"[" + b",".join([b"{}"] * 20_000) + b"]",
    "over the size limit": b'{"model":"echo","input":"' + b"x" * (LIMIT + 10) + b'"}',
}
# the agent stores nothing: NaN, infinities and lone surrogates are the containers' business there
AGENT_TAKES = {"NaN", "1e400", "a lone surrogate", "NUL"}


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    running = start_market(tmp_path_factory.mktemp("hostile-market"), env={"MAX_REQUEST_BYTES": str(LIMIT)})
    # a delegated subscription loads the Ethereum libraries (py_ecc among them) in the web process
    # first, as any gateway customer's would: the recursion limit they raised is what let a deep
    # body overflow the C stack
    _post(f"{running.url}/infernet/{running.api_key}/api/jobs", b'{"subscription": {}, "signature": {}}')
    yield running
    running.stop()


def _agent_url(market) -> str:
    args = market.process.args
    return f"http://127.0.0.1:{args[args.index('--agent-port') + 1]}"


def _post(url: str, body: bytes, headers: dict | None = None) -> requests.Response:
    return requests.post(url, data=body, headers={"Content-Type": "application/json", **(headers or {})}, timeout=30)


def _still_up(market) -> None:
    assert requests.get(f"{market.url}/v1/billing/account", headers=market.headers(), timeout=10).status_code == 200
    assert requests.get(f"{_agent_url(market)}/health", timeout=10).status_code == 200


@pytest.mark.parametrize("name", HOSTILE)
def test_the_api_and_node_enrolment_answer_a_problem_and_stay_up(market, name):
    for url, headers in ((f"{market.url}/v1/jobs", market.headers()), (f"{market.url}/v1/nodes/enroll", {})):
        response = _post(url, HOSTILE[name], headers)
        assert 400 <= response.status_code < 500, (url, response.status_code, response.text[:300])
        error = response.json()["error"]
        assert error["status"] == response.status_code and error["code"], error
    if name == "over the size limit":
        assert response.status_code == 413
    _still_up(market)


@pytest.mark.parametrize("name", HOSTILE)
def test_the_infernet_gateway_answers_in_its_own_shape_and_stays_up(market, name):
    response = _post(f"{market.url}/infernet/{market.api_key}/api/jobs", HOSTILE[name])
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert isinstance(response.json()["error"], str)
    if name == "over the size limit":
        assert response.status_code == 413
    _still_up(market)


@pytest.mark.parametrize("name", sorted(set(HOSTILE) - AGENT_TAKES))
def test_the_node_agent_answers_in_infernets_shape_and_stays_up(market, name):
    response = _post(f"{_agent_url(market)}/api/jobs", HOSTILE[name])
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert isinstance(response.json()["error"], str)
    _still_up(market)
