#!/usr/bin/env python
"""REST reads under Daphne and under gunicorn: requests per second and server CPU per request.

Starts ``manage.py runweb`` in a fresh var dir (its Daphne port also serves the REST routes,
so one process pair answers both ways) and drives the same authenticated reads at each
port with keep-alive connections from an asyncio client:

- GET /v1/billing/account (API key, rate limit, one account read)
- GET /v1/jobs (the same, plus a page of the customer's jobs; empty here)

CPU per request is the server's own: utime + stime from /proc/<pid>/stat, summed over
Daphne's process, or gunicorn's master and workers, before and after each run. Requests
per second depend on the process count (Daphne: one process; gunicorn: --workers), CPU
per request does not. The client shares the machine, so read the figures as ratios.

With DATABASE_URL, DRAMATIQ_BROKER_URL and REDIS_URL set it runs on those services (a
fresh database is made and dropped). ``--key-cache-seconds 0`` measures without the API key
cache. Usage: .venv/bin/python bench/web_tier.py [--seconds 8] [--connections 16]
[--workers 2] [--threads 4]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.marketplace.test_web_tier import WebTier  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / CLOCK_TICKS


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found


async def one_connection(port: int, request: bytes, deadline: float, counts: list) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = None
            chunked = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
                elif name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
                    chunked = True
            if chunked:
                while True:
                    size = int((await reader.readline()).strip(), 16)
                    await reader.readexactly(size + 2)
                    if size == 0:
                        break
            else:
                await reader.readexactly(length or 0)
            counts[0 if status == 200 else 1] += 1
    finally:
        writer.close()


def drive(port: int, path: str, secret: str, connections: int, seconds: float) -> tuple[int, int]:
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {secret}\r\n"
               f"Connection: keep-alive\r\n\r\n").encode()
    counts = [0, 0]

    async def run():
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(one_connection(port, request, deadline, counts) for _ in range(connections)))

    asyncio.run(run())
    return counts[0], counts[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--key-cache-seconds", type=int, default=None)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-web-"))
    tier = WebTier(tmp)
    tier.env.update({"RATE_LIMIT_PER_MINUTE": "100000000", "RATE_LIMIT_PER_HOUR": "1000000000", "LOG_LEVEL": "WARNING"})
    if args.key_cache_seconds is not None:
        tier.env["API_KEY_CACHE_SECONDS"] = str(args.key_cache_seconds)
    try:
        tier.start(workers=args.workers, threads=args.threads)
        daphne_pid = tier.process.pid
        gunicorn_master = children(daphne_pid)[0]
        servers = {
            "Daphne (1 process)": (tier.asgi_port, lambda: [daphne_pid]),
            f"gunicorn ({args.workers} workers x {args.threads} threads)":
                (tier.wsgi_port, lambda: [gunicorn_master, *children(gunicorn_master)]),
        }
        setting = "on services" if tier.database else "embedded (SQLite, in-process cache)"
        cache = f"{tier.env.get('API_KEY_CACHE_SECONDS', '30')} s" if tier.database else "off (per-process caches)"
        print(f"web tier, {setting}; API key cache {cache}; "
              f"{args.connections} keep-alive connections, {args.seconds:g}s each, {os.cpu_count()} cores")
        print(f"{'path':24} {'server':36} {'req/s':>8} {'CPU ms/req':>11} {'non-200':>8}")
        for path in ("/v1/billing/account", "/v1/jobs"):
            for name, (port, pids) in servers.items():
                drive(port, path, tier.secret, args.connections, 1.0)  # warm: connections, caches, pools
                before = cpu_seconds(pids())
                ok, other = drive(port, path, tier.secret, args.connections, args.seconds)
                used = cpu_seconds(pids()) - before
                total = ok + other
                print(f"{path:24} {name:36} {total / args.seconds:8.0f} {used * 1000 / max(total, 1):11.2f} {other:8}")
    finally:
        tier.remove()


if __name__ == "__main__":
    main()
