"""Schemathesis against the live marketplace, from its own /v1/schema/: no 5xx, no answer off-schema.

It generates requests for every operation (coverage, fuzzing and stateful phases),
authenticated with the demo key, and checks every response.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support.market import start_market

SCHEMATHESIS = shutil.which("schemathesis") or str(Path(sys.executable).with_name("schemathesis"))

if not os.path.exists(SCHEMATHESIS) and os.environ.get("CI") != "true":
    pytest.skip("schemathesis is not installed (requirements-dev.txt; CI installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    running = start_market(tmp_path_factory.mktemp("schemathesis-market"))
    yield running
    running.stop()


@pytest.mark.timeout(900)
def test_no_server_errors_and_every_answer_matches_the_schema(market, tmp_path):
    # some real jobs, so that the stateful phase and the id lookups reach existing data
    for body in ({"model": "echo", "input": "x"}, {"containers": ["tokens", "echo"], "input": {"text": "a b"}}):
        market.wait(market.submit(body))
    examples = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "40")
    done = subprocess.run(
        [SCHEMATHESIS, "run", f"{market.url}/v1/schema/", "-H", f"Authorization: Bearer {market.api_key}",
         "--checks", "not_a_server_error,response_schema_conformance,content_type_conformance",
         "--max-examples", examples, "--suppress-health-check", "all", "--report", "junit",
         "--report-dir", str(tmp_path), "--no-color"],
        capture_output=True, text=True, timeout=850,
    )
    assert done.returncode == 0, done.stdout[-15000:] + done.stderr[-3000:]
    schema = requests.get(f"{market.url}/v1/schema/", params={"format": "json"}, timeout=10).json()
    operations = sum(len(methods) for methods in schema["paths"].values())
    assert operations >= 19, "the schema lost operations"
    assert " passed" in done.stdout and f"{operations} selected" in done.stdout, "every operation was fuzzed"
    assert "unhandled error" not in market.log(), "the server logged a crash while being fuzzed"
