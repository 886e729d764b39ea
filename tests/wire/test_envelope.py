"""The private-transport envelope reproduces the published vector, both ways, and refuses tampering."""
import hashlib
import hmac
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from wire.encoding import b64u
from wire.envelope import (
    Context,
    TransportError,
    open_request,
    open_response,
    seal_request,
    seal_response,
)

# a copy of ../shared/vectors/private-transport-v1.json, so the test needs nothing beside the checkout
VECTOR_PATH = Path(__file__).resolve().with_name("private-transport-v1.json")
SHARED_VECTOR = Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "private-transport-v1.json"


@pytest.fixture(scope="module")
def vector():
    return json.loads(VECTOR_PATH.read_text())


def test_the_copy_of_the_vector_is_the_published_one(vector):
    if not SHARED_VECTOR.exists():
        pytest.skip("../shared is not beside this checkout")
    assert vector == json.loads(SHARED_VECTOR.read_text())


def _context(vector):
    return Context(**vector["context"])


def test_sealing_reproduces_the_published_request_byte_for_byte(vector):
    sealed = seal_request(
        plaintext=vector["request_plaintext"].encode(),
        context=_context(vector),
        key_id=vector["key_id"],
        node_public_key=bytes.fromhex(vector["node_public_key_x25519_hex"]),
        ephemeral=X25519PrivateKey.from_private_bytes(bytes.fromhex(vector["client_ephemeral_private_key_hex"])),
        nonce=_nonce(vector["encrypted_request"]["nonce"]),
    )
    assert sealed.envelope == vector["encrypted_request"]
    assert sealed.response_secret.hex() == vector["response_secret_hex"]


def test_the_node_opens_the_published_request(vector):
    opened = open_request(
        envelope=vector["encrypted_request"],
        context=_context(vector),
        node_private_key=X25519PrivateKey.from_private_bytes(bytes.fromhex(vector["node_private_key_x25519_hex"])),
    )
    assert opened.plaintext.decode() == vector["request_plaintext"]
    assert opened.response_secret.hex() == vector["response_secret_hex"]
    assert opened.request_aad_hash == vector["encrypted_request"]["aad_hash"]


def test_sealing_reproduces_the_published_response_and_the_client_opens_it(vector):
    context = _context(vector)
    secret = bytes.fromhex(vector["response_secret_hex"])
    sealed = seal_response(
        plaintext=vector["response_plaintext"].encode(), context=context,
        request_envelope=vector["encrypted_request"], request_aad_hash=vector["encrypted_request"]["aad_hash"],
        response_secret=secret, nonce=_nonce(vector["encrypted_response"]["nonce"]),
    )
    assert sealed == vector["encrypted_response"]
    opened = open_response(envelope=vector["encrypted_response"], context=context,
                           request_aad_hash=vector["encrypted_request"]["aad_hash"], response_secret=secret)
    assert opened.decode() == vector["response_plaintext"]


def _nonce(text):
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- a second vector, checked by an independent implementation (hmac-based HKDF, hand-built AAD)


def _hkdf_by_hand(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()  # 32 bytes = one block


def _lp(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def test_a_generated_vector_opens_with_an_independent_implementation():
    node = X25519PrivateKey.generate()
    node_public = node.public_key().public_bytes_raw()
    context = Context(job_id="0b8e6f7e-2f4a-4d8f-9a55-1d2c3b4a5e6f", customer_id="cus_test", node_id="node_beta",
                      model_id="tokens", expires_at="2000000000")
    plaintext = json.dumps({"input": "ünïcode & secrets"}).encode()
    sealed = seal_request(plaintext=plaintext, context=context, key_id="node_beta-k7", node_public_key=node_public)
    envelope = sealed.envelope

    v, alg = b"b3iq-private-transport-v1", b"x25519-hkdf-sha256-chacha20poly1305"
    aad = (b'{"alg":"x25519-hkdf-sha256-chacha20poly1305","customer_id":"cus_test","dir":"request",'
           b'"expires_at":"2000000000","job_id":"0b8e6f7e-2f4a-4d8f-9a55-1d2c3b4a5e6f","model_id":"tokens",'
           b'"node_id":"node_beta","v":"b3iq-private-transport-v1"}')
    assert envelope["aad_hash"] == hashlib.sha256(aad).hexdigest()
    enc = _nonce(envelope["client_public_key_x25519"])
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    shared = node.exchange(X25519PublicKey.from_public_bytes(enc))
    transcript = _lp(v) + _lp(alg) + _lp(b"node_beta-k7") + _lp(enc) + _lp(node_public) + _lp(hashlib.sha256(aad).digest())
    key = _hkdf_by_hand(shared, v, b"req\x00" + transcript)
    assert ChaCha20Poly1305(key).decrypt(_nonce(envelope["nonce"]), _nonce(envelope["ciphertext"]), aad) == plaintext
    assert sealed.response_secret == _hkdf_by_hand(shared, v, b"resp-secret\x00" + transcript)


# --- refusals


@pytest.fixture
def sealed_pair():
    node = X25519PrivateKey.generate()
    context = Context(job_id="j-1", customer_id="cus_a", node_id="node_a", model_id="echo", expires_at="2000000000")
    sealed = seal_request(plaintext=b'{"input":"x"}', context=context, key_id="k1",
                          node_public_key=node.public_key().public_bytes_raw())
    return node, context, sealed


@pytest.mark.parametrize(
    "change,message",
    [
        ({"version": "b3iq-private-transport-v2"}, "version must be"),
        ({"algorithm": "x25519-aes"}, "algorithm must be"),
        ({"nonce": b64u(bytes(11))}, "nonce must be 12 bytes"),
        ({"client_public_key_x25519": b64u(bytes(31))}, "must be 32 bytes"),
        ({"ciphertext": "not base64!"}, "ciphertext is not base64url"),
        ({"nonce": "AAAAAAAAAAAAAAA="}, "nonce is not base64url"),
        ({"aad_hash": "ABC"}, "aad_hash must be 64 lowercase hex"),
        ({"extra": "x"}, "unknown envelope fields: extra"),
    ],
)
def test_a_malformed_envelope_is_refused(sealed_pair, change, message):
    node, context, sealed = sealed_pair
    with pytest.raises(TransportError, match=message) as refused:
        open_request(envelope={**sealed.envelope, **change}, context=context, node_private_key=node)
    assert refused.value.code == "invalid_encrypted_request"


@pytest.mark.parametrize("field", ["job_id", "customer_id", "node_id", "model_id", "expires_at"])
def test_an_envelope_moved_to_another_context_does_not_open(sealed_pair, field):
    node, context, sealed = sealed_pair
    other = Context(**{**context.as_dict(), field: context.as_dict()[field] + "x"})
    with pytest.raises(TransportError):
        open_request(envelope=sealed.envelope, context=other, node_private_key=node)
    without_hash = {k: v for k, v in sealed.envelope.items() if k != "aad_hash"}
    with pytest.raises(TransportError, match="does not open"):
        open_request(envelope=without_hash, context=other, node_private_key=node)


def test_tampered_ciphertext_key_id_or_another_node_do_not_open(sealed_pair):
    node, context, sealed = sealed_pair
    raw = bytearray(_nonce(sealed.envelope["ciphertext"]))
    raw[0] ^= 1
    for envelope, key in [
        ({**sealed.envelope, "ciphertext": b64u(bytes(raw))}, node),
        ({**sealed.envelope, "key_id": "k2"}, node),
        (sealed.envelope, X25519PrivateKey.generate()),
    ]:
        with pytest.raises(TransportError, match="does not open"):
            open_request(envelope=envelope, context=context, node_private_key=key)


def test_an_all_zero_shared_secret_is_refused(sealed_pair):
    node, context, sealed = sealed_pair
    with pytest.raises(TransportError, match="all-zero"):
        open_request(envelope={**sealed.envelope, "client_public_key_x25519": b64u(bytes(32))}, context=context,
                     node_private_key=node)


def test_a_response_opens_only_with_its_requests_secret(sealed_pair):
    node, context, sealed = sealed_pair
    opened = open_request(envelope=sealed.envelope, context=context, node_private_key=node)
    response = seal_response(plaintext=b'{"output":"y"}', context=context, request_envelope=sealed.envelope,
                             request_aad_hash=opened.request_aad_hash, response_secret=opened.response_secret)
    assert open_response(envelope=response, context=context, request_aad_hash=opened.request_aad_hash,
                         response_secret=sealed.response_secret) == b'{"output":"y"}'
    with pytest.raises(TransportError):
        open_response(envelope=response, context=context, request_aad_hash=opened.request_aad_hash,
                      response_secret=bytes(32))
    # a response cannot be passed off as a request (reflection)
    with pytest.raises(TransportError):
        open_request(envelope=response, context=context, node_private_key=node)
