"""The Python SDK and its CLI against a running marketplace (runmarket, its node, real workers)."""
import json
import os
import subprocess
import sys

import pytest
import requests
from requests.adapters import HTTPAdapter

from marketplace.sdk import MarketplaceClient, MarketplaceError
from tests.support.agent import PROJECT_ROOT
from tests.support.market import start_market


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    running = start_market(tmp_path_factory.mktemp("sdk-market"))
    yield running
    running.stop()


@pytest.fixture
def client(market):
    return MarketplaceClient(market.url, market.api_key)


def cli(market, *args, key=None, input_env=None):
    env = {**os.environ, "MARKETPLACE_URL": market.url, "MARKETPLACE_API_KEY": key or market.api_key}
    return subprocess.run([sys.executable, "-m", "marketplace.sdk", *args], capture_output=True, text=True,
                          timeout=120, cwd=PROJECT_ROOT, env=env)


def test_submit_wait_download_and_the_bill(client, tmp_path):
    submitted = client.submit(model="echo", input={"n": 7})
    assert int(submitted["estimated_cost_wei"]) > 0
    job = client.wait(submitted["job_id"])
    assert job["status"] == "completed" and job["result"] == {"n": 7}
    download = client.download(job["job_id"])
    assert download.filename == f"{job['job_id']}.json" and json.loads(download.content) == {"n": 7}
    bill = client.bill(job["job_id"])
    assert bill["status"] == "settled" and bill["charged_price_wei"] == job["billing"]["charged_price_wei"]
    assert client.receipt(job["receipt"]["hash"])["verified"] is True
    assert any(j["job_id"] == job["job_id"] for j in client.history())
    assert int(client.account()["available"]) > 0 and client.usage()["days"]


def test_events_stream_output_and_progress(client):
    job_id = client.submit(model="tokens", input={"text": "a b c", "delay": 0.1})["job_id"]
    events = list(client.events(job_id))
    assert "".join(e["data"] for e in events if e["type"] == "output") == "a b c"
    assert events[-1]["type"] == "status" and events[-1]["status"] == "completed"


def test_cancel(client):
    job_id = client.submit(model="sleep", input={"seconds": 30})["job_id"]
    assert client.cancel(job_id)["status"] == "cancelled"
    bill = client.job(job_id)["billing"]
    # free if no node had started it; else the moment it ran, and the rest of the reservation released
    assert bill["status"] in ("released", "settled") and int(bill["charged_price_wei"]) < int(bill["reserved_price_wei"])


def test_every_api_error_is_a_clear_exception(market, client):
    with pytest.raises(MarketplaceError) as unauthorized:
        MarketplaceClient(market.url, "mk_not-a-key", retries=0).account()
    assert (unauthorized.value.status, unauthorized.value.code) == (401, "unauthorized")
    with pytest.raises(MarketplaceError) as unknown:
        client.submit(model="no-such-model", input=1)
    assert unknown.value.code == "unknown_model" and "no-such-model" in str(unknown.value)
    with pytest.raises(MarketplaceError) as missing:
        client.job("job_nope")
    assert missing.value.status == 404
    with pytest.raises(MarketplaceError) as unreachable:
        MarketplaceClient("http://127.0.0.1:9", "mk_x", retries=1, backoff_seconds=0).account()
    assert unreachable.value.status is None and "cannot reach" in str(unreachable.value)


class LoseFirstAnswer(HTTPAdapter):
    """The network edge: the first submit reaches the marketplace, but its answer is lost."""

    def __init__(self):
        super().__init__()
        self.lost = 0

    def send(self, request, **kwargs):
        response = super().send(request, **kwargs)
        if request.method == "POST" and not self.lost:
            self.lost += 1
            raise requests.ConnectionError("connection reset before the answer arrived")
        return response


def test_a_retried_submit_never_pays_twice(market):
    session = requests.Session()
    adapter = LoseFirstAnswer()
    session.mount("http://", adapter)
    client = MarketplaceClient(market.url, market.api_key, session=session, backoff_seconds=0)
    before = len(list(MarketplaceClient(market.url, market.api_key).history()))
    job = client.submit(model="echo", input="once")
    assert adapter.lost == 1, "the first answer was lost and the submit retried"
    after = list(MarketplaceClient(market.url, market.api_key).history())
    assert len(after) == before + 1 and after[0]["job_id"] == job["job_id"], "one job, reserved once"


def test_the_cli_submits_and_watches_with_live_output(market):
    done = cli(market, "submit", "--model", "tokens", "--input", '{"text": "one two three", "delay": 0.1}', "--watch")
    assert done.returncode == 0, done.stderr
    assert "one two three" in done.stdout and "%" in done.stderr


def test_the_cli_lists_gets_downloads_and_reports_balance(market, tmp_path):
    job_id = json.loads(cli(market, "submit", "--model", "echo", "--input", "hi").stdout)["job_id"]
    assert cli(market, "watch", job_id).returncode == 0
    assert json.loads(cli(market, "get", job_id).stdout)["status"] == "completed"
    target = tmp_path / "result.json"
    assert cli(market, "download", job_id, "-o", str(target)).returncode == 0
    assert json.loads(target.read_text()) == {"input": "hi"}
    assert job_id in cli(market, "history").stdout
    assert "available" in json.loads(cli(market, "balance").stdout)


def test_the_cli_says_what_went_wrong(market):
    refused = cli(market, "balance", key="mk_wrong")
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: Unauthorized (HTTP 401, unauthorized):")
    unknown = cli(market, "submit", "--model", "nope", "--input", "1")
    assert unknown.returncode == 1 and "unknown_model" in unknown.stderr


def test_the_cli_runs_a_private_job(market, tmp_path):
    done = cli(market, "private", "--model", "echo", "--pin-file", str(tmp_path / "pins.json"), "sealed words")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"input": "sealed words"}
