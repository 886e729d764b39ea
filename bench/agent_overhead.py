#!/usr/bin/env python
"""What the node agent adds to a job: its round trip against calling the container directly.

Starts an Infernet-style echo container (an HTTP service taking POST /service_output)
and a node agent in front of it (`manage.py runnode`, `http` runtime), then measures
on loopback, sequentially and with 16 concurrent clients:

- direct: POST /service_output to the container (keep-alive)
- agent job: POST /api/jobs, then GET /api/jobs?id= until finished (keep-alive, and a
  new connection per request as Infernet's baseline was measured)
- agent stream: POST /api/jobs/stream read to the end
- agent job on the built-in process `echo` container (warm worker processes)

and prints median and p95 latency, jobs per second, and the ratio agent / direct.
Usage: .venv/bin/python bench/agent_overhead.py [--jobs 400] [--concurrency 16]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
INFERNET = {  # ENVIRONMENT.md, the public Infernet node v1.4.0 measured on this kind of machine
    "direct container call (keep-alive)": "0.28 / 0.31 ms",
    "job submit -> result, sequential, new connection": "5.7 / 6.2 ms",
    "job submit -> result, sequential, keep-alive": "88 / 92 ms",
    "16 clients submitting and polling": "264 jobs/s",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_echo(port: int) -> None:
    async def service_output(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(body["data"])

    app = web.Application()
    app.router.add_post("/service_output", service_output)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def wait_for(url: str, timeout: float = 30) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except Exception:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


# --- one job, each way ---------------------------------------------------------------


async def direct(session: aiohttp.ClientSession, echo: str) -> None:
    async with session.post(f"{echo}/service_output", json={"source": 1, "destination": 1, "data": {"x": 1}}) as r:
        await r.read()


async def agent_job(session: aiohttp.ClientSession, agent: str, container: str) -> None:
    async with session.post(f"{agent}/api/jobs", json={"containers": [container], "data": {"x": 1}}) as r:
        job_id = (await r.json())["id"]
    while True:
        async with session.get(f"{agent}/api/jobs", params={"id": job_id}) as r:
            (job,) = await r.json()
        if job["status"] != "running":
            assert job["status"] == "success", job
            return
        await asyncio.sleep(0.0005)


async def agent_stream(session: aiohttp.ClientSession, agent: str, container: str) -> None:
    async with session.post(f"{agent}/api/jobs/stream", json={"containers": [container], "data": {"x": 1}}) as r:
        await r.read()


# --- measurement ---------------------------------------------------------------------


def session(keep_alive: bool) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=0, force_close=not keep_alive)
    return aiohttp.ClientSession(connector=connector)


async def sequential(call, jobs: int, keep_alive: bool = True) -> list[float]:
    latencies = []
    async with session(keep_alive) as s:
        for _ in range(min(20, jobs)):  # warm-up
            await call(s)
        for _ in range(jobs):
            started = time.perf_counter()
            await call(s)
            latencies.append(time.perf_counter() - started)
    return latencies


async def concurrent(call, jobs: int, clients: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    per_client = max(1, jobs // clients)

    async def client(s: aiohttp.ClientSession) -> None:
        for _ in range(per_client):
            started = time.perf_counter()
            await call(s)
            latencies.append(time.perf_counter() - started)

    sessions = [session(True) for _ in range(clients)]
    try:
        await asyncio.gather(*(call(s) for s in sessions))  # warm-up: open the connections
        started = time.perf_counter()
        await asyncio.gather(*(client(s) for s in sessions))
        elapsed = time.perf_counter() - started
    finally:
        for s in sessions:
            await s.close()
    return latencies, len(latencies) / elapsed


def summary(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    median = statistics.median(ordered) * 1000
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] * 1000
    return median, p95


async def measure(echo: str, agent: str, jobs: int, clients: int) -> None:
    calls = {
        "direct container call": lambda s: direct(s, echo),
        "agent job (http container)": lambda s: agent_job(s, agent, "echo-http"),
        "agent stream (http container)": lambda s: agent_stream(s, agent, "echo-http"),
        "agent job (process container)": lambda s: agent_job(s, agent, "echo"),
    }
    rows = []
    for name, call in calls.items():
        seq = summary(await sequential(call, jobs))
        fresh = summary(await sequential(call, jobs // 2, keep_alive=False))
        latencies, throughput = await concurrent(call, jobs * 2, clients)
        rows.append((name, seq, fresh, summary(latencies), throughput))

    base = rows[0]
    print(f"\nnode agent overhead: {jobs} sequential jobs, {clients} concurrent clients, loopback, "
          f"{os.cpu_count()} cores (client, agent and container share them)\n")
    header = f"{'':32} {'seq keep-alive':>16} {'seq new conn':>16} {f'{clients} clients':>16} {'jobs/s':>8} {'ratio seq':>10} {'ratio conc':>10}"
    print(header)
    print(f"{'':32} {'median/p95 ms':>16} {'median/p95 ms':>16} {'median/p95 ms':>16}")
    for name, seq, fresh, conc, throughput in rows:
        print(
            f"{name:32} {seq[0]:7.2f}/{seq[1]:<8.2f} {fresh[0]:7.2f}/{fresh[1]:<8.2f} {conc[0]:7.2f}/{conc[1]:<8.2f}"
            f" {throughput:8.0f} {seq[0] / base[1][0]:9.1f}x {conc[0] / base[3][0]:9.1f}x"
        )
    print("\nratio = median through the agent / median of the direct container call")
    print("Infernet node v1.4.0 on this kind of machine (ENVIRONMENT.md), median / p95:")
    for name, figure in INFERNET.items():
        print(f"  {name:50} {figure}")
    agent_rate = rows[1][4]
    print(f"\nagent jobs/s with {clients} clients: {agent_rate:.0f} = {agent_rate / 264:.1f}x Infernet's 264 jobs/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    echo_port, agent_port = free_port(), free_port()
    echo_process = multiprocessing.Process(target=serve_echo, args=(echo_port,), daemon=True)
    echo_process.start()
    echo = f"http://127.0.0.1:{echo_port}"
    agent = f"http://127.0.0.1:{agent_port}"
    with tempfile.TemporaryDirectory() as state:
        config = Path(state) / "agent.json"
        config.write_text(json.dumps({
            "port": agent_port,
            "rate_limit": {"num_requests": 1_000_000, "period": 1},
            "containers": [
                {"id": "echo-http", "runtime": "http", "url": echo, "concurrency": 64},
                {"id": "echo", "entrypoint": "nodes.agent.builtin:echo", "workers": 2},
            ],
        }))
        agent_process = subprocess.Popen(
            [sys.executable, "manage.py", "runnode", "--config", str(config), "--state-dir", state],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(f"{agent}/health")
            asyncio.run(measure(echo, agent, args.jobs, args.concurrency))
        finally:
            agent_process.terminate()
            agent_process.wait(timeout=15)
            echo_process.terminate()


if __name__ == "__main__":
    main()
