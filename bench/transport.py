#!/usr/bin/env python
"""The cost of the private-transport envelope: seal + open against raw ChaCha20-Poly1305.

For 1 KiB, 64 KiB and 1 MiB payloads: a request sealed by the client and opened by the
node (X25519 + two HKDFs + the AEAD), against encrypting and decrypting the same bytes
with ChaCha20-Poly1305 alone. Prints medians and the ratio. (The whole private round
trip against a public one comes with the private job API, issue #5.)
Usage: .venv/bin/python bench/transport.py [--rounds 200]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305  # noqa: E402

from privacy.transport import Context, open_request, seal_request  # noqa: E402


def median_us(function, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    node = X25519PrivateKey.generate()
    node_public = node.public_key().public_bytes_raw()
    context = Context(job_id="bench", customer_id="cus_bench", node_id="node_bench", model_id="echo",
                      expires_at="2000000000")
    print(f"\nprivate transport: seal + open vs raw ChaCha20-Poly1305, median of {args.rounds} rounds\n")
    print(f"{'payload':>10} {'envelope':>12} {'raw AEAD':>12} {'ratio':>8}")
    for size in (1024, 64 * 1024, 1024 * 1024):
        payload = os.urandom(size)

        def envelope():
            sealed = seal_request(plaintext=payload, context=context, key_id="k1", node_public_key=node_public)
            open_request(envelope=sealed.envelope, context=context, node_private_key=node)

        key, nonce, aad = os.urandom(32), os.urandom(12), b"aad"

        def raw():
            aead = ChaCha20Poly1305(key)
            aead.decrypt(nonce, aead.encrypt(nonce, payload, aad), aad)

        sealed_us, raw_us = median_us(envelope, args.rounds), median_us(raw, args.rounds)
        print(f"{size // 1024:>7} KiB {sealed_us:>9.0f} µs {raw_us:>9.0f} µs {sealed_us / raw_us:>7.1f}x")


if __name__ == "__main__":
    main()
