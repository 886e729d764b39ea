"""Node transport keys (signed, rotated, destroyed; replays refused) and private receipts."""
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nodes.agent.identity import Identity
from nodes.agent.transport_keys import TransportKeyring
from wire.encoding import b64u
from wire.envelope import Context, TransportError, b64u_decode, request_aad, seal_request
from wire.keys import private_receipt_check, transport_key_check, transport_key_current
from wire.signing import receipt_hash


class Clock:
    def __init__(self, now=1_800_000_000):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def identity():
    return Identity(Ed25519PrivateKey.generate())


@pytest.fixture
def keyring(identity, clock):
    return TransportKeyring(identity, rotation_seconds=1000, grace_seconds=100, clock=clock)


CONTEXT = Context(job_id="6f1c0c5e-3b7e-4d55-9d7a-7f0f4b3c2a10", customer_id="cus_1", node_id="node_1",
                  model_id="echo", expires_at="1800000300")


def seal_to(record, context=CONTEXT, plaintext=b'{"input":"hi"}'):
    return seal_request(plaintext=plaintext, context=context, key_id=record["key_id"],
                        node_public_key=b64u_decode(record["public_key_x25519"], "key")).envelope


def test_published_keys_are_signed_by_the_identity_key(keyring, identity):
    (record,) = keyring.published()
    assert transport_key_check(record, identity.public_key_b64u) == record
    assert record["not_before"] == "1800000000" and record["not_after"] == str(1_800_000_000 + 1100)
    other = Identity(Ed25519PrivateKey.generate())
    with pytest.raises(TransportError) as refused:
        transport_key_check(record, other.public_key_b64u)
    assert refused.value.code == "invalid_key_signature"


@pytest.mark.parametrize(
    "change",
    [
        {"not_after": "1900000000"},  # a longer life than the node gave it
        {"key_id": "tk_someone_else"},
        {"public_key_x25519": b64u(bytes(range(32)))},  # a key the marketplace holds the private half of
        {"signature": b64u(bytes(64))},
    ],
)
def test_a_changed_key_record_does_not_verify(keyring, identity, change):
    record = {**keyring.published()[0], **change}
    with pytest.raises(TransportError):
        transport_key_check(record, identity.public_key_b64u)


def test_a_key_record_with_extra_or_missing_fields_is_refused(keyring, identity):
    record = keyring.published()[0]
    with pytest.raises(TransportError):
        transport_key_check({**record, "note": "x"}, identity.public_key_b64u)
    with pytest.raises(TransportError):
        transport_key_check({k: v for k, v in record.items() if k != "not_before"}, identity.public_key_b64u)


def test_a_request_opens_once_and_a_replay_is_refused(keyring):
    envelope = seal_to(keyring.published()[0])
    assert keyring.open(envelope, CONTEXT).plaintext == b'{"input":"hi"}'
    with pytest.raises(TransportError) as replay:
        keyring.open(envelope, CONTEXT)
    assert replay.value.code == "replayed_request"


def test_a_request_that_does_not_open_is_not_remembered(keyring):
    envelope = seal_to(keyring.published()[0])
    wrong_context = Context(**{**CONTEXT.as_dict(), "model_id": "other"})
    with pytest.raises(TransportError) as refused:
        keyring.open({k: v for k, v in envelope.items() if k != "aad_hash"}, wrong_context)
    assert refused.value.code == "invalid_encrypted_request"
    assert keyring.open(envelope, CONTEXT).plaintext  # the real one still opens


def test_an_unknown_key_id_is_refused_with_its_code(keyring):
    envelope = {**seal_to(keyring.published()[0]), "key_id": "tk_nobody"}
    with pytest.raises(TransportError) as refused:
        keyring.open(envelope, CONTEXT)
    assert refused.value.code == "unknown_key_id"


def test_rotation_keeps_the_old_key_for_its_grace_then_destroys_it(keyring, clock):
    old = keyring.published()[0]
    sealed_before = seal_to(old)
    clock.now += 10
    new_id = keyring.rotate()
    records = {r["key_id"]: r for r in keyring.published()}
    assert set(records) == {old["key_id"], new_id}
    assert records[old["key_id"]]["not_after"] == str(clock.now + 100), "the old key now ends after the grace"
    assert transport_key_current(list(records.values()), clock.now)["key_id"] == new_id
    assert keyring.open(sealed_before, CONTEXT).plaintext  # inside the grace: still opens

    second = seal_to(old, context=Context(**{**CONTEXT.as_dict(), "job_id": "another"}))
    clock.now += 100
    assert [r["key_id"] for r in keyring.published()] == [new_id]
    with pytest.raises(TransportError) as gone:
        keyring.open(second, Context(**{**CONTEXT.as_dict(), "job_id": "another"}))
    assert gone.value.code == "unknown_key_id"
    assert old["key_id"] not in keyring._keys, "the private key is dropped, not merely hidden"


def test_keys_rotate_on_schedule(keyring, clock):
    first = keyring.current_key_id
    clock.now += 999
    assert keyring.tick() is False and keyring.current_key_id == first
    clock.now += 1
    assert keyring.tick() is True and keyring.current_key_id != first
    assert len(keyring.published()) == 2
    clock.now += 100
    keyring.tick()
    assert [r["key_id"] for r in keyring.published()] == [keyring.current_key_id]


# --- private receipts -------------------------------------------------------------------


def _receipt(identity, **changes):
    body = {
        "job_id": CONTEXT.job_id, "node_id": "node_1", "model_id": "echo", "key_id": "tk_1",
        "request_aad_hash": hashlib.sha256(request_aad(CONTEXT)).hexdigest(),
        "request_ciphertext_sha256": "a" * 64, "response_aad_hash": "b" * 64,
        "response_ciphertext_sha256": "c" * 64, "status": "success", "started_at": "t0",
        "completed_at": "t1", "duration_ms": "12",
    }
    return identity.sign_receipt({**body, **changes}).as_dict()


def test_a_private_receipt_checks_with_the_identity_key(identity):
    receipt = _receipt(identity)
    body = private_receipt_check(receipt, identity.public_key_b64u, {"job_id": CONTEXT.job_id, "key_id": "tk_1"})
    assert receipt["hash"] == receipt_hash(body)


def test_a_receipt_whose_hash_is_not_its_hash_is_a_receipt_hash_mismatch(identity):
    receipt = {**_receipt(identity), "hash": "0" * 64}
    with pytest.raises(TransportError) as refused:
        private_receipt_check(receipt, identity.public_key_b64u, {})
    assert refused.value.code == "receipt_hash_mismatch"


def test_a_receipt_signed_by_another_key_or_for_another_job_is_refused(identity):
    other = Identity(Ed25519PrivateKey.generate())
    with pytest.raises(TransportError) as forged:
        private_receipt_check(_receipt(other), identity.public_key_b64u, {})
    assert forged.value.code == "invalid_receipt"
    with pytest.raises(TransportError) as moved:
        private_receipt_check(_receipt(identity), identity.public_key_b64u, {"job_id": "some-other-job"})
    assert moved.value.code == "invalid_receipt" and "job_id" in str(moved.value)


def test_a_key_rotated_in_the_same_second_is_still_the_current_one(keyring, clock):
    for _ in range(5):
        new_id = keyring.rotate()
        assert transport_key_current(keyring.published(), clock.now)["key_id"] == new_id


def test_rotating_again_and_again_keeps_a_bounded_key_set(keyring, clock):
    from nodes.agent.transport_keys import MAX_KEYS

    ids = [keyring.rotate() for _ in range(MAX_KEYS + 3)]
    published = [r["key_id"] for r in keyring.published()]
    assert len(published) == MAX_KEYS and ids[-1] in published and ids[0] not in published
