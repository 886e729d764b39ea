"""The marketplace as an Infernet node: the published infernet-client, unmodified, against runmarket.

Jobs go through the same dispatch, billing and limits as any other; delegated
subscriptions are verified (EIP-712), run on schedule on distinct nodes, and
delivered to the recording adapter. The API key rides in the path and never in the logs.
"""
import asyncio
import json
import time

import pytest
import requests
from eth_account import Account
from infernet_client.chain.subscription import Subscription
from infernet_client.error import APIError
from infernet_client.node import NodeClient

from tests.support.market import start_market

ZERO = "0x0000000000000000000000000000000000000000"
CHAIN_ID = 31337
COORDINATOR = "0x663F3ad617193148711d28f5334eE4Ed07016602"


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    running = start_market(tmp_path_factory.mktemp("gateway-market"),
                           env={"INFERNET_CHAIN_ID": str(CHAIN_ID), "INFERNET_COORDINATOR_ADDRESS": COORDINATOR})
    running.add_agent(tmp_path_factory.mktemp("second-node"), "second")
    deadline = time.monotonic() + 20
    while len(run(NodeClient(f"{running.url}/infernet/{running.api_key}").get_resources())["echo"]
               ["compute_capability"][0]["models"]) < 1 or not _two_nodes(running):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    yield running
    running.stop()


def _two_nodes(market) -> bool:
    return market.shell("from nodes.selectors import nodes_online; print(nodes_online().count())") == "2"


@pytest.fixture
def client(market):
    return NodeClient(f"{market.url}/infernet/{market.api_key}")


def test_health_info_and_resources(client):
    assert run(client.health()) is True
    info = run(client.get_info())
    assert {"echo", "sleep", "tokens"} <= {c["id"] for c in info["containers"]}
    assert set(info["pending"]) == {"offchain", "onchain"}
    resources = run(client.get_resources())
    assert resources["echo"]["compute_capability"][0]["models"] == [{"owner": "", "name": "echo"}]
    support = run(client.check_model_support("echo"))
    assert support["echo"] == {"supported": True} and support["sleep"]["supported"] is False


def test_a_job_runs_through_the_marketplace_and_is_billed(client, market):
    job_id = run(client.request_job({"containers": ["echo"], "data": {"hello": "world"}}))
    result = run(client.get_job_result_sync(job_id, retries=30))
    assert result["status"] == "success" and result["result"] == {"container": "echo", "output": {"hello": "world"}}
    same = market.job(job_id)  # the same job on the marketplace's own API, with its bill
    assert same["billing"]["status"] == "settled" and same["receipt"]["verified"] is True


def test_a_chain_reports_its_intermediate_results(client):
    job_id = run(client.request_job({"containers": ["tokens", "echo"], "data": {"text": "a b"}}))
    run(client.get_job_result_sync(job_id, retries=30))
    (result,) = run(client.get_job_results([job_id], intermediate=True))
    assert result["result"]["output"] == {"text": "a b", "tokens": 2}
    assert result["intermediate_results"] == [{"container": "tokens", "output": {"text": "a b", "tokens": 2}}]


def test_a_batch_answers_item_by_item(client):
    answers = run(client.request_jobs([
        {"containers": ["echo"], "data": {"n": 1}},
        {"containers": ["no-such-container"], "data": {}},
    ]))
    assert "id" in answers[0]
    assert answers[1] == {"error": "Container not supported", "params": {"container": "no-such-container"}}


def test_the_pending_filter(client):
    job_id = run(client.request_job({"containers": ["sleep"], "data": {"seconds": 2}}))
    assert job_id in run(client.get_jobs(pending=True))
    run(client.get_job_result_sync(job_id, retries=30))
    assert job_id in run(client.get_jobs(pending=False)) and job_id not in run(client.get_jobs(pending=True))


def test_a_stream_gives_the_id_then_the_output_as_it_comes(client, market):
    async def collect():
        chunks = []
        async for chunk in client.request_stream({"containers": ["tokens"], "data": {"text": "one two three",
                                                                                    "delay": 0.2}}):
            chunks.append((time.monotonic(), chunk))
        return chunks

    chunks = run(collect())
    job_id = chunks[0][1]
    assert job_id.startswith("job_")
    text = b"".join(c for _, c in chunks[1:]).decode()
    assert text == "one two three"
    assert len(chunks) >= 3 and chunks[-1][0] - chunks[1][0] > 0.2, "the words came as they were made"
    assert market.job(job_id)["status"] == "completed"


def test_errors_are_json_in_infernets_shape(market, client):
    base = f"{market.url}/infernet"
    wrong = requests.get(f"{base}/mk_not-a-key/info", timeout=10)
    assert wrong.status_code == 401 and wrong.json() == {"error": "Unauthorized"}
    missing = requests.get(f"{base}/{market.api_key}/api/nothing", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"] == "Not found"
    garbled = requests.post(f"{base}/{market.api_key}/api/jobs", data=b"{not json", timeout=10)
    assert garbled.status_code == 400 and garbled.json()["error"] == "Could not parse request body as JSON"
    nul = requests.post(f"{base}/{market.api_key}/api/jobs", json={"containers": ["echo"], "data": {"a": "\u0000"}},
                        timeout=10)
    assert nul.status_code == 400 and "NUL" in nul.json()["error"]
    with pytest.raises(APIError) as refused:
        run(client.request_job({"containers": ["echo"], "data": {}, "requires_proof": True}))
    assert refused.value.status_code == 400


def test_the_key_in_the_path_never_reaches_the_logs(market):
    base = f"{market.url}/infernet/{market.api_key}"
    requests.get(f"{base}/no/such/route", timeout=10)
    requests.post(f"{base}/api/jobs", data=b"oops", timeout=10)
    time.sleep(0.5)
    log = market.log() + "".join(p.read_text(errors="replace") for p in market.var_dir.parent.glob("worker-*.log"))
    assert "/infernet/<api-key>" in log, "Django logged the 4xx paths, redacted"
    assert f"/infernet/{market.api_key}" not in log
    # runmarket's banner prints the demo key on purpose; no other line may hold it
    banner = ("API key", "Bearer", "--api-key")
    assert [line for line in log.splitlines() if market.api_key in line and not any(b in line for b in banner)] == []


def test_the_keys_rate_limit_holds_on_the_gateway(market):
    key = market.manage("createapikey", "--customer", "demo")
    market.shell(f"from marketplace.models import ApiKey; ApiKey.objects.filter(prefix='{key[:10]}')"
                 ".update(rate_limit_per_minute=2)")
    codes = [requests.get(f"{market.url}/infernet/{key}/health", timeout=10).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


class FakeRpc:
    """The chain is the system edge here: only its id is asked for."""

    async def get_chain_id(self) -> int:
        return CHAIN_ID


def _subscribe(client, account, *, expiry_in=600, nonce=1, frequency=2, period=2, redundancy=2, signer=None):
    subscription = Subscription(
        owner=account.address, active_at=int(time.time()), period=period, frequency=frequency,
        redundancy=redundancy, containers=["echo"], lazy=False, verifier=ZERO, payment_amount=0,
        payment_token=ZERO, wallet=ZERO,
    )
    run(client.request_delegated_subscription(
        subscription, FakeRpc(), COORDINATOR, int(time.time()) + expiry_in, nonce, (signer or account).key.hex(),
        {"reading": 42},
    ))


def _deliveries(market, owner: str) -> list:
    return json.loads(market.shell(
        "import json; from jobs.models import SubscriptionDelivery as D; "
        f"print(json.dumps(list(D.objects.filter(subscription__owner='{owner}')"
        ".values_list('interval', 'node__public_id', 'job__result'))))"
    ))


def test_a_delegated_subscription_runs_each_interval_on_distinct_nodes_and_is_delivered(client, market):
    account = Account.create()
    _subscribe(client, account)
    deadline = time.monotonic() + 40
    while len(deliveries := _deliveries(market, account.address)) < 4:
        assert time.monotonic() < deadline, deliveries
        time.sleep(0.5)
    by_interval = {}
    for interval, node, result in deliveries:
        by_interval.setdefault(interval, []).append(node)
        assert result == {"reading": 42}
    assert sorted(by_interval) == [1, 2]
    assert all(len(set(nodes)) == 2 for nodes in by_interval.values()), "each interval on two distinct nodes"
    _subscribe(client, account)  # the same signed request again runs nothing new
    time.sleep(3)
    assert len(_deliveries(market, account.address)) == 4


def test_an_expired_or_wrongly_signed_subscription_is_refused(client):
    account = Account.create()
    with pytest.raises(APIError) as expired:
        _subscribe(client, account, expiry_in=-10)
    assert (expired.value.status_code, expired.value.message) == (400, "Signature expired")
    with pytest.raises(APIError) as forged:
        _subscribe(client, account, signer=Account.create())
    assert forged.value.status_code == 400 and forged.value.message.startswith("Invalid signature")
