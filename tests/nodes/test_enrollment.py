"""Nodes enrol with a one-time token and their identity key, then keep signed heartbeats."""
import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from nodes.agent.identity import load_or_create_identity
from nodes.models import EnrollmentToken, Node
from nodes.selectors import no_candidate_reason, node_candidates
from nodes.services import enrollment_token_create
from tests import factories

pytestmark = pytest.mark.django_db

HARDWARE = [
    {"capability_id": "base", "cpu_info": {}, "disk_info": [], "os_info": {}},
    {"capability_id": "gpu", "gpu_info": [{"name": "NVIDIA H100 80GB HBM3", "memory_total": 81559},
                                          {"name": "NVIDIA H100 80GB HBM3", "memory_total": 81559}]},
]


@pytest.fixture
def identity(tmp_path):
    return load_or_create_identity(tmp_path)


def signed_post(client, identity, path, body, token=None, age=0, identity_for_signature=None):
    raw = json.dumps(body).encode()
    signer = identity_for_signature or identity
    headers = signer.sign_request("POST", path, raw)
    if age:
        headers["X-Node-Timestamp"] = str(int(time.time()) - age)
        from wire.encoding import b64u
        from wire.signing import request_signing_message

        headers["X-Node-Signature"] = b64u(signer.sign(request_signing_message(
            headers["X-Node-Timestamp"], "POST", path, raw, nonce=headers["X-Node-Nonce"])))
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    if token:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client.post(path, data=raw, content_type="application/json", **extra)


def enroll_body(secret, identity):
    return {
        "token": secret, "url": "http://127.0.0.1:4999", "name": "rig-1",
        "identity_public_key": identity.public_key_b64u, "containers": ["echo", "llm"],
        "models": {"echo": "echo", "llama-3-8b": "llm"}, "hardware": HARDWARE, "capacity": 3,
        "price_per_second_wei": "12345",
    }


def test_a_node_enrols_with_a_token_and_its_identity_key(identity):
    miner = factories.miner("mia")
    issued = enrollment_token_create(miner=miner)
    response = signed_post(APIClient(), identity, "/v1/nodes/enroll", enroll_body(issued.secret, identity))
    assert response.status_code == 201, response.content
    body = response.json()
    node = Node.objects.get(public_id=body["node_id"])
    assert body["miner_id"] == miner.public_id and body["node_token"] and "push_token" not in body
    assert node.identity_public_key == identity.public_key_b64u
    assert (node.gpu_type, node.gpu_count, node.vram_gb) == ("h100", 2, 79.6)
    assert node.model_map == {"echo": "echo", "llama-3-8b": "llm"} and node.capacity == 3
    assert str(node.price_per_second_wei) == "12345"
    assert not node.is_online, "a node is online once its socket is open, not when it enrols"
    assert body["node_token"] not in node.token_hash
    assert EnrollmentToken.objects.get(pk=issued.token.pk).used_at is not None


def test_a_token_enrols_once(identity, tmp_path):
    issued = enrollment_token_create(miner=factories.miner())
    assert signed_post(APIClient(), identity, "/v1/nodes/enroll", enroll_body(issued.secret, identity)).status_code == 201
    other = load_or_create_identity(tmp_path / "other")
    again = signed_post(APIClient(), other, "/v1/nodes/enroll", enroll_body(issued.secret, other))
    assert again.status_code == 403 and again.json()["error"]["code"] == "enrollment_refused"


@pytest.mark.parametrize("case", ["unknown", "expired", "revoked"])
def test_a_bad_token_is_refused(identity, case):
    issued = enrollment_token_create(miner=factories.miner())
    secret = issued.secret
    if case == "unknown":
        secret = "enroll_nope"
    elif case == "expired":
        EnrollmentToken.objects.filter(pk=issued.token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    else:
        EnrollmentToken.objects.filter(pk=issued.token.pk).update(revoked_at=timezone.now())
    response = signed_post(APIClient(), identity, "/v1/nodes/enroll", enroll_body(secret, identity))
    assert response.status_code == 403 and response.json()["error"]["code"] == "enrollment_refused"
    assert not Node.objects.exists()


def test_enrolment_needs_a_signature_by_the_key_it_enrols(identity, tmp_path):
    issued = enrollment_token_create(miner=factories.miner())
    impostor = load_or_create_identity(tmp_path / "impostor")
    response = signed_post(APIClient(), identity, "/v1/nodes/enroll", enroll_body(issued.secret, identity),
                           identity_for_signature=impostor)
    assert response.status_code == 401 and response.json()["error"]["code"] == "node_unauthorized"


@pytest.mark.parametrize("field,value", [("url", "not a url"), ("containers", []), ("identity_public_key", "short"),
                                         ("capacity", 0), ("price_per_second_wei", "-1")])
def test_a_malformed_enrolment_is_a_422(identity, field, value):
    issued = enrollment_token_create(miner=factories.miner())
    body = {**enroll_body(issued.secret, identity), field: value}
    response = signed_post(APIClient(), identity, "/v1/nodes/enroll", body)
    assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error"


@pytest.fixture
def enrolled(identity):
    issued = enrollment_token_create(miner=factories.miner())
    body = signed_post(APIClient(), identity, "/v1/nodes/enroll", enroll_body(issued.secret, identity)).json()
    return body


def test_there_is_no_http_heartbeat_a_node_without_its_socket_could_stay_online_by(identity, enrolled):
    # heartbeats ride the node socket only: a node whose socket is gone fails over on time
    path = f"/v1/nodes/{enrolled['node_id']}/heartbeat"
    response = signed_post(APIClient(), identity, path, {"capacity": 5}, token=enrolled["node_token"])
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_a_node_that_misses_heartbeats_goes_offline(settings):
    settings.NODE_OFFLINE_AFTER_SECONDS = 20
    node = factories.node()
    assert node.is_online
    Node.objects.filter(pk=node.pk).update(last_heartbeat_at=timezone.now() - timedelta(seconds=21))
    node.refresh_from_db()
    assert not node.is_online
    assert node_candidates(model="echo", containers=[], gpu_type="", gpu_count=0, min_vram_gb=0, exclude=[]) == []


def spec(**overrides):
    return {"model": "llm", "containers": [], "gpu_type": "", "gpu_count": 0, "min_vram_gb": 0, "exclude": [], **overrides}


def test_candidates_meet_the_jobs_requirements():
    big = factories.node(models=("llm",), gpu_type="h100", gpu_count=8, vram_gb=80)
    small = factories.node(models=("llm",), gpu_type="t4", gpu_count=1, vram_gb=16)
    factories.node(models=("other",), gpu_type="h100", gpu_count=8, vram_gb=80)
    factories.node(models=("llm",), gpu_type="h100", gpu_count=8, vram_gb=80, online=False)
    assert node_candidates(**spec(gpu_type="h100")) == [big]
    assert node_candidates(**spec(gpu_count=2)) == [big]
    assert node_candidates(**spec(min_vram_gb=40)) == [big]
    assert set(node_candidates(**spec())) == {big, small}
    assert node_candidates(**spec(exclude=[big.public_id])) == [small]
    suspended = factories.node(models=("llm",))
    Node.objects.filter(pk=suspended.pk).update(approval=Node.Approval.SUSPENDED)
    assert suspended not in node_candidates(**spec())


def test_no_candidate_reasons_say_what_is_missing():
    factories.node(models=("llm",), gpu_type="t4", gpu_count=1, vram_gb=16)
    assert no_candidate_reason(**spec(model="gpt")) == "no online node serves model gpt"
    assert no_candidate_reason(**spec(gpu_type="h100")) == "no online node offers gpu_type h100"
    assert no_candidate_reason(**spec(gpu_count=4)) == "no online node has 4 GPUs"
    assert no_candidate_reason(**spec(min_vram_gb=80)) == "no online node has 80 GB of VRAM per GPU"
    Node.objects.update(last_heartbeat_at=timezone.now() - timedelta(hours=1))
    assert no_candidate_reason(**spec()) == "no node is online"
