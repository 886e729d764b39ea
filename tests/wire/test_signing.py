"""Receipts and signed requests, as anyone holding a node's public key checks them (no agent needed)."""
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nodes.agent.identity import Identity
from wire.encoding import b64u, b64u_decode, canonical
from wire.signing import RECEIPT_FIELDS, receipt_hash, request_signing_message, verify_receipt, verify_signature


@pytest.fixture
def identity():
    return Identity(Ed25519PrivateKey.generate())


def fields(**changes) -> dict:
    return {name: "" for name in RECEIPT_FIELDS} | {"job_id": "j1", "status": "success", "duration_ms": "12"} | changes


def test_a_receipt_verifies_and_its_hash_is_the_hash_of_its_canonical_body(identity):
    receipt = identity.sign_receipt(fields()).as_dict()
    assert receipt["hash"] == receipt_hash(receipt["body"]) and receipt["signer"] == identity.public_key_b64u
    assert verify_receipt(receipt, identity.public_key_b64u)
    assert not verify_receipt(receipt, Identity(Ed25519PrivateKey.generate()).public_key_b64u)


def test_a_receipt_is_over_exactly_its_string_fields(identity):
    with pytest.raises(ValueError):
        identity.sign_receipt(fields(duration_ms=12))
    with pytest.raises(ValueError):
        identity.sign_receipt({**fields(), "extra": "x"})
    receipt = identity.sign_receipt(fields()).as_dict()
    receipt["body"] = {**receipt["body"], "duration_ms": 12}  # the same number, spelt otherwise
    assert not verify_receipt(receipt, identity.public_key_b64u)
    for broken in ({}, {"body": "x", "hash": "", "signature": ""}, {"body": {}, "hash": None}):
        assert not verify_receipt(broken, identity.public_key_b64u)


def test_a_signed_request_names_its_time_nonce_method_path_and_body(identity):
    headers = identity.sign_request("post", "/v1/nodes/enroll", b"{}")
    stamp, nonce = headers["X-Node-Timestamp"], headers["X-Node-Nonce"]
    message = request_signing_message(stamp, "POST", "/v1/nodes/enroll", b"{}", nonce=nonce)
    assert verify_signature(identity.public_key_b64u, headers["X-Node-Signature"], message)
    other = request_signing_message(stamp, "POST", "/v1/nodes/enroll", b"{ }", nonce=nonce)
    assert not verify_signature(identity.public_key_b64u, headers["X-Node-Signature"], other)
    another_nonce = request_signing_message(stamp, "POST", "/v1/nodes/enroll", b"{}", nonce="0" * 32)
    assert not verify_signature(identity.public_key_b64u, headers["X-Node-Signature"], another_nonce)
    assert identity.sign_request("post", "/v1/nodes/enroll", b"{}")["X-Node-Nonce"] != nonce
    assert not verify_signature("not a key", headers["X-Node-Signature"], message)


def test_base64url_and_canon_have_one_spelling():
    assert b64u(b"\xfb\xff") == "-_8" and b64u_decode("-_8") == b"\xfb\xff"
    for bad in ("+/8", "-_8=", "a", 5):
        with pytest.raises(ValueError):
            b64u_decode(bad)
    assert canonical({"b": "2", "a": "é"}) == b'{"a":"\\u00e9","b":"2"}'
    with pytest.raises(ValueError):
        canonical({"a": 1})
