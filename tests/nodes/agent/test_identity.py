"""The identity key is made once, kept private, and signs a verifiable receipt for every job."""
import hashlib
import json
import stat

from nodes.agent.identity import IDENTITY_FILE
from tests.support.agent import start_agent
from wire.encoding import canonical
from wire.signing import verify_receipt

ECHO = {"containers": [{"id": "echo", "entrypoint": "nodes.agent.builtin:echo"}]}


def test_the_key_is_made_on_first_start_with_mode_600_and_kept(tmp_path):
    state = tmp_path / "state"
    first = start_agent(tmp_path, ECHO, state_dir=state)
    try:
        node = first.get("/info").json()["node"]
    finally:
        first.stop()
    key_file = state / IDENTITY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    pem = key_file.read_bytes()

    second = start_agent(tmp_path, ECHO, state_dir=state)
    try:
        again = second.get("/info").json()["node"]
        assert (again["id"], again["identity_public_key"]) == (node["id"], node["identity_public_key"])
        # transport keys live in memory only: a restart starts a new one
        assert {k["key_id"] for k in again["transport_keys"]}.isdisjoint(k["key_id"] for k in node["transport_keys"])
    finally:
        second.stop()
    assert key_file.read_bytes() == pem


def test_every_finished_job_carries_a_receipt_that_verifies(agent):
    data = {"text": "sign me", "n": 1}
    job = agent.wait(agent.submit(["upper"], data))
    receipt = job["receipt"]
    node = agent.get("/info").json()["node"]
    body = receipt["body"]

    assert set(body) == {
        "job_id", "node_id", "model_id", "key_id", "request_aad_hash", "request_ciphertext_sha256",
        "response_aad_hash", "response_ciphertext_sha256", "status", "started_at", "completed_at", "duration_ms",
    }
    assert all(isinstance(v, str) for v in body.values())
    assert body["job_id"] == job["id"] and body["node_id"] == node["id"] and body["status"] == "success"
    assert body["model_id"] == "upper"
    canon = lambda v: json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert body["request_ciphertext_sha256"] == hashlib.sha256(canon(data)).hexdigest()
    assert body["response_ciphertext_sha256"] == hashlib.sha256(canon(job["result"])).hexdigest()
    assert receipt["hash"] == hashlib.sha256(canonical(body)).hexdigest()
    assert receipt["signer"] == node["identity_public_key"]
    assert verify_receipt(receipt, node["identity_public_key"])


def test_a_tampered_receipt_does_not_verify(agent):
    job = agent.wait(agent.submit(["echo"], {}))
    key = agent.get("/info").json()["node"]["identity_public_key"]
    forged = json.loads(json.dumps(job["receipt"]))
    forged["body"]["duration_ms"] = "999999"
    assert not verify_receipt(forged, key)
    forged["hash"] = hashlib.sha256(canonical(forged["body"])).hexdigest()
    assert not verify_receipt(forged, key), "a fixed-up hash still fails the signature"
    assert not verify_receipt(job["receipt"], "A" * 43)
