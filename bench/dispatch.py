#!/usr/bin/env python
"""What the marketplace adds to a job: submit → completed through the whole stack.

Starts ``runmarket`` (with its local agent) in a fresh var dir and measures, on
loopback:

- direct: the same trivial job (echo) pushed to the node agent itself, as the
  marketplace does it (POST /api/jobs/stream with the push token, read to the end)
- marketplace: POST /v1/jobs, then its event stream (/v1/jobs/{id}/events) until completed

sequentially (median, p95, and the ratio marketplace / direct) and with 16
concurrent clients (jobs per second submitted and completed).

With DATABASE_URL, DRAMATIQ_BROKER_URL and REDIS_URL set it runs on those
services (a fresh database is made) with --workers rundramatiq processes.
Usage: .venv/bin/python bench/dispatch.py [--jobs 200] [--concurrency 16] [--workers 2]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.market import services_configured, start_market  # noqa: E402



def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def summary(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:8.2f} / {percentile(values, 0.95) * 1000:8.2f} ms"


def direct_job(session: requests.Session, agent_url: str, push_token: str) -> None:
    response = session.post(
        f"{agent_url}/api/jobs/stream",
        json={"containers": ["echo"], "data": {"input": "ping"}},
        headers={"Authorization": f"Bearer {push_token}", "X-Stream-Format": "events"},
        stream=True,
    )
    for _ in response.iter_content(chunk_size=None):
        pass


def market_job(session: requests.Session, url: str, headers: dict) -> None:
    """Submit, then wait on the job's event stream (no polling) until its final status."""
    response = session.post(f"{url}/v1/jobs", json={"model": "echo", "input": "ping"}, headers=headers)
    if response.status_code != 201:
        raise RuntimeError(f"submit refused: {response.status_code} {response.text}")
    wait_on_events(session, url, response.json()["job_id"], headers)


def wait_on_events(session: requests.Session, url: str, job_id: str, headers: dict) -> dict:
    """Read the job's event stream to its end; the last event must say completed."""
    final = None
    with session.get(f"{url}/v1/jobs/{job_id}/events", headers=headers, stream=True) as events:
        for line in events.iter_lines():
            if line.startswith(b"data: "):
                final = json.loads(line[6:])
    assert final and final["status"] == "completed", final
    return final


def sequential(call, jobs: int) -> list[float]:
    session = requests.Session()
    for _ in range(5):
        call(session)
    latencies = []
    for _ in range(jobs):
        started = time.perf_counter()
        call(session)
        latencies.append(time.perf_counter() - started)
    return latencies


def concurrent(call, jobs: int, clients: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    lock = threading.Lock()

    def client() -> None:
        session = requests.Session()
        for _ in range(max(1, jobs // clients)):
            started = time.perf_counter()
            call(session)
            with lock:
                latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, len(latencies) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        market = start_market(
            Path(folder), workers=args.workers,
            env={"MAX_CONCURRENT_JOBS": "10000", "LOG_LEVEL": "WARNING", "JOB_QUEUE_TIMEOUT_SECONDS": "600"},
        )
        try:
            enrollment = json.loads((market.var_dir / "agent" / "enrollment.json").read_text())
            agent_port = market.process.args[market.process.args.index("--agent-port") + 1]
            agent_url = f"http://127.0.0.1:{agent_port}"
            headers = market.headers()
            setup = "PostgreSQL + broker + Redis, %d rundramatiq workers" % args.workers if services_configured() \
                else "embedded default: SQLite, in-process worker, in-memory channel layer"
            print(f"\ndispatch benchmark: {setup}; {os.cpu_count()} cores shared by client, web, workers and agent\n")

            direct = sequential(lambda s: direct_job(s, agent_url, enrollment["push_token"]), args.jobs)
            through = sequential(lambda s: market_job(s, market.url, headers), args.jobs)
            print(f"{'trivial job, sequential':40} {'median / p95':>22}")
            print(f"{'  agent directly (push + stream)':40} {summary(direct):>22}")
            print(f"{'  marketplace (submit -> completed)':40} {summary(through):>22}")
            ratio = statistics.median(through) / statistics.median(direct)
            overhead = (statistics.median(through) - statistics.median(direct)) * 1000
            print(f"  ratio {ratio:.1f}x; marketplace overhead per job {overhead:.1f} ms (median)")

            latencies, rate = concurrent(lambda s: market_job(s, market.url, headers), args.jobs, args.concurrency)
            print(f"\n{args.concurrency} concurrent clients: {rate:.1f} jobs/s submitted and completed; "
                  f"latency {summary(latencies)}")
        finally:
            market.stop()


if __name__ == "__main__":
    main()
