#!/usr/bin/env python
"""The cost of the private-transport envelope: seal + open against raw ChaCha20-Poly1305.

For 1 KiB, 64 KiB and 1 MiB payloads: a request sealed by the client and opened by the
node (X25519 + two HKDFs + the AEAD), against encrypting and decrypting the same bytes
with ChaCha20-Poly1305 alone. Prints medians and the ratio.

Then the whole round trip through ``runmarket`` and its node agent, private against
public, both waiting on the job's event stream: public is submit → completed; private
adds sealing, the receipt check (one more GET) and opening the sealed response.
Usage: .venv/bin/python bench/transport.py [--rounds 200] [--jobs 100] [--no-round-trip]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305  # noqa: E402

from wire.envelope import Context, open_request, seal_request  # noqa: E402

BENCH = Path(__file__).resolve().parent


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
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--no-round-trip", action="store_true")
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
    if not args.no_round_trip:
        round_trip(args.jobs)


def round_trip(jobs: int) -> None:
    import requests

    from privacy.client import PrivateInferenceClient
    from tests.support.market import services_configured, start_market

    sys.path.insert(0, str(BENCH))
    from dispatch import market_job, sequential, summary, wait_on_events

    with tempfile.TemporaryDirectory() as folder:
        market = start_market(Path(folder), env={"MAX_CONCURRENT_JOBS": "10000", "LOG_LEVEL": "WARNING"})
        try:
            client = PrivateInferenceClient(market.url, market.api_key)
            (offer,) = [o for o in client.nodes() if "echo" in o.models]
            headers = market.headers()

            def private_until_completed(session: requests.Session):
                job = client.seal(offer, model_id="echo", input="ping")
                client.send(job)
                wait_on_events(session, market.url, job.job_id, headers)
                return job

            def private_job(session: requests.Session) -> None:
                job = private_until_completed(session)
                record = client.get(job.job_id)
                client.verify_receipt(job, record)
                assert client.open(job, record) == {"output": {"input": "ping"}}

            setup = "PostgreSQL + broker + Redis" if services_configured() else "embedded default"
            print(f"\nround trip through runmarket ({setup}), trivial echo job, sequential, {jobs} jobs")
            public = sequential(lambda s: market_job(s, market.url, headers), jobs)
            until_completed = sequential(private_until_completed, jobs)
            private = sequential(private_job, jobs)
            print(f"{'  public (submit -> completed)':52} {summary(public):>22}")
            print(f"{'  private (seal, submit -> completed)':52} {summary(until_completed):>22}")
            print(f"{'  private (seal, submit, completed, receipt, open)':52} {summary(private):>22}")
            print(f"  ratio private / public {statistics.median(private) / statistics.median(public):.2f}x")
        finally:
            market.stop()


if __name__ == "__main__":
    main()
