"""Private jobs through the marketplace and real node agents: the B3IQ API, dispatch, receipts.

The live server and the agents are real; the broker is the edge, so the tests run
the dispatch step where a worker would.
"""
import os
import signal
import time
import uuid

import pytest
import requests

from jobs.models import Job, JobStatus
from nodes.models import Node
from privacy.client import PrivateInferenceClient, PrivateInferenceError
from privacy.relay import private_result_check
from wire.encoding import b64u
from wire.envelope import TransportError, b64u_decode
from tests import factories
from tests.privacy.helpers import balances, run, run_until_running
from tests.support.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

SEED_FIELDS = {
    "job_id", "node_id", "model_id", "status", "encrypted_request", "encrypted_response", "receipt_hash",
    "billing", "created_at", "completed_at",
}
SEED_BILLING = {"customer_id", "policy_version", "quoted_price_wei", "reserved_price_wei", "payout_price_wei", "status"}


def test_a_private_job_round_trips_sealed_and_settles_on_a_verified_receipt(enroll, client, customer):
    agent = enroll("alpha")
    (offer,) = client.nodes()
    assert offer.node_id == agent.node.public_id
    assert offer.transport_keys == agent.get("/transport-keys").json()["transport_keys"]

    job = client.seal(offer, model_id="echo", input={"prompt": "the secret plan"})
    accepted = client.send(job)
    assert set(accepted) == {"status", "job_id", "node_id", "billing", "created_at"}
    assert accepted["status"] == "queued" and accepted["job_id"] == job.job_id
    assert accepted["billing"]["status"] == "reserved"

    stored = run(job.job_id)
    assert stored.status == JobStatus.COMPLETED, stored.status_reason
    assert stored.input is None and stored.result is None and stored.receipt_verified

    record = client.get(job.job_id)
    assert set(record) == SEED_FIELDS and set(record["billing"]) == SEED_BILLING
    assert record["status"] == "completed" and record["node_id"] == agent.node.public_id
    assert record["encrypted_request"] == job.request_envelope
    assert record["billing"]["status"] == "settled" and int(record["billing"]["payout_price_wei"]) > 0
    assert record["receipt_hash"] == stored.receipt_hash

    assert client.result(job) == {"output": {"prompt": "the secret plan"}}
    with pytest.raises(PrivateInferenceError) as again:
        client.open(job, record)
    assert again.value.code == "already_opened", "the response secret is forgotten once used"


def test_the_same_job_id_and_body_is_the_same_job_and_a_different_body_is_a_conflict(enroll, client, live_server,
                                                                                     dispatcher):
    enroll("alpha")
    (offer,) = client.nodes()
    job = client.seal(offer, model_id="echo", input="x")
    with dispatcher.hold():  # the same answer both times: the job has not moved in between
        first, second = client.send(job), client.send(job)
    assert first == second and Job.objects.filter(public_id=job.job_id).count() == 1
    with pytest.raises(PrivateInferenceError) as conflict:
        client.send(job, max_price_wei=int(offer.models["echo"]) + 1)
    assert (conflict.value.status, conflict.value.code) == (409, "job_id_conflict")

    from marketplace.services import api_key_create

    stranger = PrivateInferenceClient(live_server.url, api_key_create(customer=factories.customer("bob")).secret)
    with pytest.raises(PrivateInferenceError) as taken:
        stranger.send(job)
    assert taken.value.code == "job_id_conflict"
    with pytest.raises(PrivateInferenceError) as hidden:
        stranger.get(job.job_id)
    assert hidden.value.status == 404


def _b64_flip(text: str) -> str:
    raw = bytearray(b64u_decode(text, "x"))
    raw[0] ^= 1
    return b64u(bytes(raw))


@pytest.mark.parametrize(
    "tamper, code",
    [
        (lambda e: {**e, "version": "b3iq-private-transport-v0"}, "invalid_encrypted_request"),
        (lambda e: {**e, "algorithm": "x25519-hkdf-sha256-aes256gcm"}, "invalid_encrypted_request"),
        (lambda e: {**e, "extra": "1"}, "invalid_encrypted_request"),
        (lambda e: {**e, "nonce": b64u(bytes(11))}, "invalid_encrypted_request"),
        (lambda e: {**e, "client_public_key_x25519": e["client_public_key_x25519"] + "=="}, "invalid_encrypted_request"),
        (lambda e: {**e, "ciphertext": e["ciphertext"].replace(e["ciphertext"][0], "+", 1)}, "invalid_encrypted_request"),
        (lambda e: {**e, "aad_hash": "0" * 64}, "invalid_encrypted_request"),
        (lambda e: {**e, "key_id": "tk_0000000000000000"}, "unknown_key_id"),
    ],
)
def test_a_bad_envelope_is_refused_before_anything_is_reserved(enroll, client, customer, tamper, code):
    enroll("alpha")
    (offer,) = client.nodes()
    job = client.seal(offer, model_id="echo", input="x")
    job.request_envelope = tamper(job.request_envelope)
    before = balances(customer)
    with pytest.raises(PrivateInferenceError) as refused:
        client.send(job)
    assert (refused.value.status, refused.value.code) == (400, code), refused.value.detail
    assert balances(customer) == before and not Job.objects.filter(public_id=job.job_id).exists()


def test_an_envelope_moved_to_another_job_or_node_is_refused(enroll, client, customer):
    enroll("alpha")
    enroll("beta")
    offers = {o.node_id: o for o in client.nodes()}
    alpha, beta = (offers[n.public_id] for n in Node.objects.order_by("pk"))
    job = client.seal(alpha, model_id="echo", input="x")

    job_id = job.job_id
    job.job_id = str(uuid.uuid4())  # the same envelope, under another job id
    with pytest.raises(PrivateInferenceError) as moved:
        client.send(job)
    assert moved.value.code == "invalid_encrypted_request" and "aad_hash" in moved.value.detail

    job.job_id, job.node = job_id, beta  # the same envelope, sent to another node
    with pytest.raises(PrivateInferenceError) as elsewhere:
        client.send(job)
    assert elsewhere.value.code == "unknown_key_id"
    assert not Job.objects.exists()


def test_an_expired_request_is_refused(enroll, client):
    enroll("alpha")
    (offer,) = client.nodes()
    job = client.seal(offer, model_id="echo", input="x", ttl_seconds=-5)
    with pytest.raises(PrivateInferenceError) as refused:
        client.send(job)
    assert (refused.value.status, refused.value.code) == (400, "expired_request")


def test_what_only_the_node_can_detect_fails_the_job_with_its_code_and_releases_the_money(enroll, client, customer):
    enroll("alpha")
    (offer,) = client.nodes()
    before = balances(customer)

    tampered = client.seal(offer, model_id="echo", input="x")
    tampered.request_envelope = {**tampered.request_envelope,
                                 "ciphertext": _b64_flip(tampered.request_envelope["ciphertext"])}
    client.send(tampered)
    # without aad_hash the marketplace cannot tell the envelope belongs to another job: the node can
    moved = client.seal(offer, model_id="echo", input="x")
    moved.request_envelope = {k: v for k, v in moved.request_envelope.items() if k != "aad_hash"}
    moved.job_id = str(uuid.uuid4())
    client.send(moved)

    for pending in (tampered, moved):
        job = run(pending.job_id)
        assert (job.status, job.error_code) == (JobStatus.FAILED, "invalid_encrypted_request"), job.status_reason
        assert job.billing_status == "released" and job.attempts.count() == 1
        with pytest.raises(PrivateInferenceError) as failed:
            client.result(pending)
        assert failed.value.code == "invalid_encrypted_request"
    assert balances(customer) == before


def test_the_node_refuses_a_sealed_request_sent_to_it_again(enroll, client, customer):
    enroll("alpha")
    (offer,) = client.nodes()
    job = client.seal(offer, model_id="echo", input="replay-me-plaintext")
    client.send(job)
    assert run(job.job_id).status == JobStatus.COMPLETED
    # a marketplace (or someone holding its socket) that sends the same envelope once more
    stored = Job.objects.get(public_id=job.job_id)
    Job.objects.filter(pk=stored.pk).update(status=JobStatus.QUEUED, node=None, completed_at=None)
    from jobs.dispatch.scheduler import schedule

    schedule()
    replayed = run(job.job_id)
    assert (replayed.status, replayed.error_code) == (JobStatus.FAILED, "replayed_request"), replayed.status_reason
    assert replayed.attempts.count() == 2 and replayed.billing_status == "settled", "charged once, for the first run"


def test_the_node_has_no_http_route_for_the_marketplaces_jobs(enroll):
    agent = enroll("alpha")
    pushed = requests.post(agent.url + "/api/private/jobs/stream", json={}, timeout=10)
    assert pushed.status_code == 404, "private jobs reach a node over its own socket only"


def test_a_request_that_expires_in_the_queue_expires_with_its_code(enroll, client, customer, dispatcher):
    enroll("alpha")
    (offer,) = client.nodes()
    job = client.seal(offer, model_id="echo", input="x", ttl_seconds=1)
    with dispatcher.hold():
        client.send(job)
        time.sleep(1.2)
    stored = run(job.job_id)
    assert (stored.status, stored.error_code, stored.billing_status) == (JobStatus.EXPIRED, "expired_request", "released")


def test_a_job_whose_node_stays_busy_expires_with_no_healthy_candidates(enroll, client, customer, dispatcher):
    from django.utils import timezone

    enroll("alpha")
    (offer,) = client.nodes()
    with dispatcher.hold():
        job = client.submit(offer, model_id="echo", input="x")
        Job.objects.filter(public_id=job.job_id).update(queue_deadline=timezone.now())  # waited its longest
    stored = run(job.job_id)
    assert (stored.status, stored.error_code, stored.billing_status) == (JobStatus.EXPIRED, "no_healthy_candidates", "released")
    assert "no free slot" in stored.status_reason


def test_a_private_job_runs_on_its_node_or_nowhere(enroll, client, customer):
    alpha = enroll("alpha")
    enroll("beta")  # serves the same model, but cannot open what was sealed to alpha
    offer = next(o for o in client.nodes() if o.node_id == alpha.node.public_id)
    before = balances(customer)

    job = client.submit(offer, model_id="sleep", input={"seconds": 30})
    worker = run_until_running(job.job_id)
    os.kill(alpha.process.pid, signal.SIGKILL)
    worker.join(timeout=60)
    stored = Job.objects.get(public_id=job.job_id)
    assert (stored.status, stored.error_code) == (JobStatus.FAILED, "no_healthy_candidates"), stored.status_reason
    assert stored.attempts.count() == 1 and stored.billing_status == "released"
    assert balances(customer) == before

    Node.objects.filter(pk=alpha.node.pk).update(last_heartbeat_at=None)
    with pytest.raises(PrivateInferenceError) as offline:
        client.send(client.seal(offer, model_id="echo", input="x"))
    assert (offline.value.status, offline.value.code) == (503, "no_healthy_candidates")


def test_a_job_whose_node_went_offline_while_queued_fails_and_is_refunded(enroll, client, customer, dispatcher):
    agent = enroll("alpha")
    (offer,) = client.nodes()
    before = balances(customer)
    with dispatcher.hold():
        job = client.submit(offer, model_id="echo", input="x")
        agent.stop()
        Node.objects.filter(pk=agent.node.pk).update(last_heartbeat_at=None)
    stored = run(job.job_id)
    assert (stored.status, stored.error_code, stored.billing_status) == (JobStatus.FAILED, "no_healthy_candidates", "released")
    assert balances(customer) == before


def test_the_marketplace_settles_only_on_a_receipt_that_checks(enroll, client):
    agent = enroll("alpha")
    (offer,) = client.nodes()
    job = client.submit(offer, model_id="echo", input="x")
    stored = run(job.job_id)
    result = {"id": stored.node_job_id, "status": "success", "receipt": stored.receipt,
              "result": {"container": "echo", "encrypted_response": stored.encrypted_response}}
    assert private_result_check(job=stored, node=agent.node, result=result).receipt_hash == stored.receipt_hash

    forged_hash = {**result, "receipt": {**result["receipt"], "hash": "0" * 64}}
    with pytest.raises(TransportError) as mismatch:
        private_result_check(job=stored, node=agent.node, result=forged_hash)
    assert mismatch.value.code == "receipt_hash_mismatch"

    body = {**result["receipt"]["body"], "duration_ms": "999999"}  # a longer job, to be paid more
    with pytest.raises(TransportError) as changed:
        private_result_check(job=stored, node=agent.node, result={**result, "receipt": {**result["receipt"], "body": body}})
    assert changed.value.code == "receipt_hash_mismatch"

    response = {**result["result"]["encrypted_response"]}
    response["ciphertext"] = _b64_flip(response["ciphertext"])
    swapped = {**result, "result": {**result["result"], "encrypted_response": response}}
    with pytest.raises(TransportError) as other_bytes:
        private_result_check(job=stored, node=agent.node, result=swapped)
    assert other_bytes.value.code == "invalid_receipt"


def test_a_rotated_key_is_published_and_the_old_one_opens_during_its_grace(enroll, client):
    agent = enroll("alpha")
    (offer,) = client.nodes()
    old_key = offer.current_key()["key_id"]
    job = client.seal(offer, model_id="echo", input="sealed before the rotation")

    rotated = requests.post(agent.url + "/transport-keys/rotate", timeout=10).json()["key_id"]
    deadline = time.monotonic() + 10
    while {k["key_id"] for k in Node.objects.get(pk=agent.node.pk).transport_keys} != {old_key, rotated}:
        assert time.monotonic() < deadline, "the rotation reaches the marketplace with the next heartbeat"
        time.sleep(0.05)
    (offer,) = client.nodes()
    assert offer.current_key()["key_id"] == rotated

    client.send(job)
    assert run(job.job_id).status == JobStatus.COMPLETED
    assert client.result(job) == {"output": {"input": "sealed before the rotation"}}


def test_a_marketplace_that_swaps_a_nodes_keys_is_caught_by_the_client(enroll, client, tmp_path, live_server):
    from privacy.client import KeyPins

    agent = enroll("alpha")
    pinned = PrivateInferenceClient(live_server.url, client._api_key, pins=KeyPins.at(tmp_path / "pins.json"))
    assert [o.node_id for o in pinned.nodes()] == [agent.node.public_id]  # pinned on first use

    node = Node.objects.get(pk=agent.node.pk)
    forged = dict(node.transport_keys[0], public_key_x25519=b64u(bytes(range(1, 33))))
    Node.objects.filter(pk=node.pk).update(transport_keys=[forged])
    assert pinned.nodes() == [], "a key the node did not sign is not sealed to"

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    impostor = b64u(Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    Node.objects.filter(pk=node.pk).update(identity_public_key=impostor)
    with pytest.raises(PrivateInferenceError) as changed:
        pinned.verify_node({"node_id": node.public_id, "identity_public_key": impostor, "transport_keys": [],
                            "models": []})
    assert changed.value.code == "identity_key_changed"


def test_money_is_checked_before_a_private_job_is_queued(enroll, live_server, pricing):
    from marketplace.services import api_key_create

    enroll("alpha")
    broke = factories.customer("broke", funds=0)
    client = PrivateInferenceClient(live_server.url, api_key_create(customer=broke).secret)
    (offer,) = client.nodes()
    with pytest.raises(PrivateInferenceError) as poor:
        client.submit(offer, model_id="echo", input="x")
    assert (poor.value.status, poor.value.code) == (402, "insufficient_balance")

    rich = PrivateInferenceClient(live_server.url, api_key_create(customer=factories.customer("rich")).secret)
    with pytest.raises(PrivateInferenceError) as capped:
        rich.submit(offer, model_id="echo", input="x", max_price_wei=1)  # less than its first second costs
    assert (capped.value.status, capped.value.code) == (402, "price_above_max")
    assert "per GPU-second" in str(capped.value), "the refusal names the cheapest rate"
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    "change, field",
    [
        ({"job_id": "not-a-uuid"}, "job_id"),
        ({"job_id": str(uuid.uuid4()).upper()}, "job_id"),
        ({"expires_at": "soon"}, "expires_at"),
        ({"max_price_wei": -1}, "max_price_wei"),
        ({"encrypted_request": "sealed"}, "encrypted_request"),
        ({"plaintext": "oops"}, "non_field_errors"),
    ],
)
def test_a_malformed_private_submit_is_a_422_naming_the_field(enroll, client, change, field):
    enroll("alpha")
    (offer,) = client.nodes()
    job = client.seal(offer, model_id="echo", input="x")
    body = {"job_id": job.job_id, "node_id": offer.node_id, "model_id": "echo", "max_price_wei": "10",
            "expires_at": job.context.expires_at, "encrypted_request": job.request_envelope, **change}
    response = requests.post(f"{client.base_url}/v1/private-inference/jobs", json=body, timeout=10,
                             headers={"Authorization": f"Bearer {client._api_key}"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error"
    assert field in response.json()["error"]["fields"]


def test_the_b3iq_header_pair_works_and_a_wrong_pair_is_a_401(enroll, client, customer):
    enroll("alpha")
    (offer,) = client.nodes()
    job = client.submit(offer, model_id="echo", input="x")
    pair = {"X-B3IQ-Customer-ID": customer.public_id, "X-B3IQ-Customer-Token": client._api_key}
    url = f"{client.base_url}/v1/private-inference/jobs/{job.job_id}"
    response = requests.get(url, headers=pair, timeout=10)
    assert response.status_code == 200 and response.json()["job_id"] == job.job_id
    listed = requests.get(f"{client.base_url}/v1/private-inference/nodes", headers=pair, timeout=10)
    assert [n["node_id"] for n in listed.json()["nodes"]] == [offer.node_id]
    wrong = requests.get(url, headers={**pair, "X-B3IQ-Customer-ID": "cus_someone_else"}, timeout=10)
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"


def test_a_private_job_is_cancelled_on_its_node_and_charged_only_the_time_it_ran(enroll, client, customer):
    agent = enroll("alpha")
    (offer,) = client.nodes()
    before = balances(customer)
    job = client.submit(offer, model_id="sleep", input={"seconds": 30})
    worker = run_until_running(job.job_id)
    cancelled = client._call("DELETE", f"/v1/jobs/{job.job_id}")
    assert cancelled["status"] == "cancelled"
    worker.join(timeout=30)
    stored = Job.objects.get(public_id=job.job_id)
    # it ran (a second or so) before the cancel: that is charged, the rest of the reservation released
    assert stored.status == JobStatus.CANCELLED and stored.billing_status == "settled"
    charged = int(stored.charged_price_wei)
    assert 0 < charged < int(stored.reserved_price_wei)
    wait_for(lambda: "cancelled at the marketplace's request" in agent.log(), message=agent.log())
    assert client.get(job.job_id)["status"] == "cancelled"
    available, reserved = balances(customer)
    assert (available, reserved) == (before[0] - charged, before[1])
