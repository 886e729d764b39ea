#!/usr/bin/env python
"""What open live streams cost one web process: memory per stream, and a plain request beside them.

Starts ``runmarket`` (as tests/support/market.py does: the embedded default, or with
DATABASE_URL, REDIS_URL and DRAMATIQ_BROKER_URL set, on those services) with no agent, makes
one job that stays queued (its streams never end on their own), then for each count and kind
(SSE at /v1/jobs/{id}/events, WebSocket at /ws/jobs/{id}/) opens that many streams on one API
key, waits for every snapshot, and measures:

- how many opened (the rest failed: refused, reset, timed out)
- the web process's resident memory, and its growth per open stream
- its CPU to open them, per stream
- p50 / p95 of a plain authenticated request (GET /v1/billing/account) while they are open,
  beside the same with none open

Usage: .venv/bin/python bench/streams.py [--counts 1000,5000] [--kinds sse,ws] [--plain 200]
"""
from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _procstat import CLOCK_TICKS, snapshot, subtree  # noqa: E402
from tests.support.market import start_market  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_ticks(pid: int) -> int:
    procs = snapshot()
    return sum(procs[p].own for p in subtree(procs, pid) if p in procs)


async def plain_latencies(session: aiohttp.ClientSession, url: str, headers: dict, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        async with session.get(f"{url}/v1/billing/account", headers=headers) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"plain request answered {response.status}")
        times.append((time.perf_counter() - started) * 1000)
    return times


async def open_sse(session, url, job_id, headers, opened: list) -> None:
    response = await session.get(f"{url}/v1/jobs/{job_id}/events", headers=headers)
    if response.status != 200:
        response.release()
        raise RuntimeError(f"SSE answered {response.status}")
    line = await response.content.readline()
    while line and not line.startswith(b"data: "):
        line = await response.content.readline()
    opened.append(response)


async def open_ws(session, url, job_id, headers, opened: list) -> None:
    socket = await session.ws_connect(f"{url}/ws/jobs/{job_id}/", headers=headers)
    await socket.receive_json(timeout=60)
    opened.append(socket)


async def measure(market, job_id: str, kind: str, count: int, plain: int) -> dict:
    headers = {"Authorization": f"Bearer {market.api_key}"}
    pid = market.process.pid
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=60, sock_read=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as streams, \
            aiohttp.ClientSession() as plain_session:
        before_ms = await plain_latencies(plain_session, market.url, headers, plain)
        rss_before, ticks_before = rss_mb(pid), cpu_ticks(pid)
        opened: list = []
        opener = open_sse if kind == "sse" else open_ws
        gate = asyncio.Semaphore(200)  # connections being opened at once, as a burst of clients would

        async def one():
            async with gate:
                await opener(streams, market.url, job_id, headers, opened)

        started = time.perf_counter()
        results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
        open_seconds = time.perf_counter() - started
        failures = [r for r in results if isinstance(r, BaseException)]
        await asyncio.sleep(1)
        rss_after, ticks_after = rss_mb(pid), cpu_ticks(pid)
        during_ms = await plain_latencies(plain_session, market.url, headers, plain)
        for stream in opened:
            if kind == "sse":
                stream.close()
            else:
                await stream.close()
    return {
        "kind": kind, "count": count, "opened": len(opened), "failed": len(failures),
        "first failure": repr(failures[0])[:120] if failures else "",
        "open s": open_seconds, "rss before MB": rss_before, "rss after MB": rss_after,
        "KB per stream": (rss_after - rss_before) * 1024 / max(len(opened), 1),
        "CPU ms per stream": (ticks_after - ticks_before) * 1000 / CLOCK_TICKS / max(len(opened), 1),
        "plain p50 none": statistics.median(before_ms), "plain p95 none": _p95(before_ms),
        "plain p50 open": statistics.median(during_ms), "plain p95 open": _p95(during_ms),
    }


def _p95(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.95) - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", default="1000,5000")
    parser.add_argument("--kinds", default="sse,ws")
    parser.add_argument("--plain", type=int, default=200, help="plain requests per measurement")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    # every stream is a socket at both ends: the client's and the server's (inherited) limit
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * max(counts) + 1024)), hard))
    rows, services = [], False
    for kind in args.kinds.split(","):
        for count in counts:
            # a fresh process each time: memory a process freed is not given back to the system,
            # so a measurement after another would read low
            market = start_market(Path(f"/tmp/bench-streams-{time.time_ns()}"), agent=False, workers=1, env={
                "MAX_STREAMS_PER_KEY": str(10 * max(counts)), "JOB_QUEUE_TIMEOUT_SECONDS": "86400",
                "RATE_LIMIT_PER_MINUTE": "10000000", "RATE_LIMIT_PER_HOUR": "100000000", "LOG_LEVEL": "WARNING",
            })
            try:
                services = bool(market.database)
                job_id = market.shell(
                    "from jobs.models import Job; from marketplace.models import Customer; "
                    "print(Job.objects.create(customer=Customer.objects.get(name='demo'), model='echo', "
                    "input='x').public_id)").strip().splitlines()[-1]
                rows.append(asyncio.run(measure(market, job_id, kind, count, args.plain)))
            finally:
                market.stop()
    if rows:
        print(f"\nstreams benchmark: runmarket (one process: Daphne), {'services' if services else 'embedded default'}; "
              "a fresh process per row")
        header = ("kind", "count", "opened", "failed", "open s", "rss before MB", "rss after MB", "KB per stream",
                  "CPU ms per stream", "plain p50 none", "plain p50 open", "plain p95 none", "plain p95 open")
        print("  ".join(f"{h:>13}" for h in header))
        for row in rows:
            print("  ".join(f"{row[h]:>13.1f}" if isinstance(row[h], float) else f"{row[h]:>13}" for h in header))
            if row["first failure"]:
                print(f"  first failure: {row['first failure']}")


if __name__ == "__main__":
    main()
