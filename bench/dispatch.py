#!/usr/bin/env python
"""What the marketplace spends on a job: submit → completed through the whole stack, on loopback.

One run prints, for the configuration the environment names:

- sequential latency (p50 / p95): the node agent directly (POST /api/jobs/stream on its own API,
  read to the end) and the marketplace (POST /v1/jobs, then /v1/jobs/{id}/events to the final status)
- jobs/s with --concurrency clients of one customer, and of as many customers (one client each)
- CPU milliseconds per job in every phase, summed over every process of the run and broken down by
  group: the web tier, the rundramatiq workers, the node agent (with its children), and on services
  PostgreSQL (all its processes: shared, so a delta over the phase), RabbitMQ (beam.smp and children)
  and Redis. The client (this process) is left out of the total and printed on its own line.
- on PostgreSQL: statements per job (the bench database runs with log_statement = 'all', counted in
  the server's log) and transactions per job (pg_stat_database xact_commit + xact_rollback).

Embedded default (no DATABASE_URL, DRAMATIQ_BROKER_URL, REDIS_URL): ``runmarket`` (one process:
Daphne, the in-process worker, SQLite) with its local agent, started by tests/support/market.py.
On services: a fresh database; the web tier is ``runweb`` (gunicorn for REST, Daphne for /ws/ and the
streams; the client sends each route where a proxy would) or, with --web runmarket, ``runmarket``;
--workers rundramatiq processes (1 process x 8 threads each, as start_market runs them); one agent
enrolled over the node socket. Everything started is removed at the end: processes, the database,
the broker queues and the Redis keys of the run's prefix.

Usage: .venv/bin/python bench/dispatch.py [--jobs 200] [--concurrency 16] [--workers 2]
       [--web runweb|runmarket] [--web-workers N] [--web-threads 4] [--history N] [--breakdown] [--pg-log PATH]

--breakdown adds two phases at --concurrency clients: submits alone (the jobs run, nobody watches; the
phase ends when the last of them has) and the event stream of a job that has ended (the request's own
cost). Subtracted from the full job, they say how much of it is the watching.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _procstat import CLOCK_TICKS, Groups, cmdline, named_trees, snapshot, subtree  # noqa: E402
from tests.support.agent import free_port  # noqa: E402
from tests.support.market import PROJECT_ROOT, services_configured, start_market  # noqa: E402

FINAL = {"completed", "failed", "cancelled", "expired"}
PART = "  of which: "  # a group inside the one above it: not added to the total


def machine_busy_ticks() -> int:
    """Busy ticks of all CPUs (user, nice, system, irq, softirq, steal) from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields[:3]) + sum(fields[5:8])


# ---------------------------------------------------------------- client (this process)

async def direct_job(session: aiohttp.ClientSession, agent_url: str) -> None:
    async with session.post(f"{agent_url}/api/jobs/stream",
                            json={"containers": ["echo"], "data": {"input": "ping"}}) as response:
        if response.status != 200:
            raise RuntimeError(f"agent refused: {response.status} {await response.text()}")
        await response.read()


async def market_job(session: aiohttp.ClientSession, rest_url: str, stream_url: str, key: str) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    async with session.post(f"{rest_url}/v1/jobs", json={"model": "echo", "input": "ping"}, headers=headers) as r:
        body = await r.read()
        if r.status != 201:
            raise RuntimeError(f"submit refused: {r.status} {body[:300]!r}")
        job_id = json.loads(body)["job_id"]
    final = None
    async with session.get(f"{stream_url}/v1/jobs/{job_id}/events", headers=headers) as events:
        if events.status != 200:
            raise RuntimeError(f"events refused: {events.status} {(await events.read())[:300]!r}")
        async for line in events.content:
            if line.startswith(b"data: "):
                final = json.loads(line[6:])
    if not final or final.get("status") != "completed":
        raise RuntimeError(f"job {job_id} ended {final}")


async def market_submit(session: aiohttp.ClientSession, rest_url: str, key: str) -> str:
    """A submit alone (the job runs; nobody watches it): the job's id."""
    async with session.post(f"{rest_url}/v1/jobs", json={"model": "echo", "input": "ping"},
                            headers={"Authorization": f"Bearer {key}"}) as r:
        body = await r.read()
        if r.status != 201:
            raise RuntimeError(f"submit refused: {r.status} {body[:300]!r}")
        return json.loads(body)["job_id"]


async def finished_stream(session: aiohttp.ClientSession, stream_url: str, key: str, job_id: str) -> None:
    """The event stream of a job that has ended: the request's own cost (one final event, then the end)."""
    async with session.get(f"{stream_url}/v1/jobs/{job_id}/events",
                           headers={"Authorization": f"Bearer {key}"}) as events:
        body = await events.read()
        if events.status != 200 or b'"completed"' not in body:
            raise RuntimeError(f"events of a finished job: {events.status} {body[:300]!r}")


async def run_finished_job(rest_url: str, stream_url: str, key: str) -> str:
    async with aiohttp.ClientSession() as session:
        job_id = await market_submit(session, rest_url, key)
        for _ in range(200):
            async with session.get(f"{rest_url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"}) as r:
                if (await r.json()).get("status") == "completed":
                    return job_id
            await asyncio.sleep(0.05)
    raise RuntimeError(f"job {job_id} did not complete")


def submits_drained(rest_url: str, key: str, concurrency: int, jobs: int):
    """Submits alone, then the wait for the last of them to end: the phase holds all their work."""
    submitted: list[str] = []

    async def submit(session):
        submitted.append(await market_submit(session, rest_url, key))

    async def drain() -> None:
        async with aiohttp.ClientSession() as session:
            for job_id in submitted[-concurrency:]:
                for _ in range(600):
                    async with session.get(f"{rest_url}/v1/jobs/{job_id}",
                                           headers={"Authorization": f"Bearer {key}"}) as r:
                        if (await r.json()).get("status") in FINAL:
                            break
                    await asyncio.sleep(0.02)

    def work():
        asyncio.run(run_clients([submit] * concurrency, concurrency))  # warm
        asyncio.run(drain())
        started = time.perf_counter()
        latencies, _ = asyncio.run(run_clients([submit] * concurrency, jobs))
        asyncio.run(drain())
        return latencies, time.perf_counter() - started
    return work


async def run_sequential(call, jobs: int) -> list[float]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        latencies = []
        for _ in range(jobs):
            started = time.perf_counter()
            await call(session)
            latencies.append(time.perf_counter() - started)
        return latencies


async def run_clients(calls: list, jobs: int) -> tuple[list[float], float]:
    """One client per entry of ``calls`` (each its own connection pool), jobs split among them."""
    latencies: list[float] = []
    shares = [jobs // len(calls) + (1 if index < jobs % len(calls) else 0) for index in range(len(calls))]

    async def client(call, share: int) -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            for _ in range(share):
                started = time.perf_counter()
                await call(session)
                latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client(call, share) for call, share in zip(calls, shares)))
    return latencies, time.perf_counter() - started


# ---------------------------------------------------------------- PostgreSQL counters

STATEMENT = re.compile(r"LOG:  (?:statement|execute [^:]*): *(\w*)", re.I)


class PostgresCounters:
    """Transactions (pg_stat_database) and statements (log_statement lines of this database)."""

    def __init__(self, admin_url: str, database: str, log_path: Path):
        import psycopg

        self.database = database
        self.conn = psycopg.connect(admin_url, autocommit=True)
        self.url = urlunsplit(urlsplit(admin_url)._replace(path=f"/{database}"))
        # off on some servers (this project's CI machines): then no table is ever analyzed, plans
        # stay those made for empty tables, and dead row versions pile up, so the cost of a job
        # grows through a run for reasons a production server does not have
        self.autovacuum = self.conn.execute("SHOW autovacuum").fetchone()[0] == "on"
        self.log_path = log_path
        self.log_ok = False
        try:
            with open(log_path, "rb"):
                self.log_ok = True
        except OSError as exc:
            print(f"(statement counts off: cannot read {log_path}: {exc})")
        self.prefix = re.compile(rf"@{re.escape(database)} ".encode())

    def enable_statement_log(self) -> None:
        # new sessions of this database only: the servers are started after this
        self.conn.execute(f'ALTER DATABASE "{self.database}" SET log_statement = \'all\'')
        self.conn.execute(f'ALTER DATABASE "{self.database}" SET log_parameter_max_length = 0')

    def tidy(self) -> None:
        """What autovacuum would have done by now, where it is off: run before each phase."""
        if self.autovacuum:
            return
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")

    def add_history(self, jobs: int) -> None:
        """``jobs`` finished jobs on the bench node, copies of the first completed one: a marketplace
        with a past. Per-job cost must not grow with it (a statement that scans a node's or a
        model's whole history shows here)."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            columns = [row[0] for row in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'jobs_job' "
                "AND is_generated = 'NEVER' AND column_name NOT IN ('id', 'public_id', 'idempotency_key') "
                "ORDER BY ordinal_position")]
            names = ", ".join(f'"{c}"' for c in columns)
            copied = ", ".join(f'j."{c}"' for c in columns)
            conn.execute(
                f"INSERT INTO jobs_job (public_id, {names}) SELECT 'history-' || g, {copied} "
                f"FROM jobs_job j, generate_series(1, %s) g "
                f"WHERE j.id = (SELECT min(id) FROM jobs_job WHERE status = 'completed')", (jobs,))
            conn.execute("VACUUM ANALYZE jobs_job")

    def xacts(self) -> int:
        row = self.conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
                                (self.database,)).fetchone()
        return int(row[0]) if row else 0

    def backend_pids(self) -> set[int]:
        rows = self.conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.database,)).fetchall()
        return {row[0] for row in rows}

    def log_offset(self) -> int:
        return self.log_path.stat().st_size if self.log_ok else 0

    def statements(self, since: int) -> dict[str, int]:
        counts: dict[str, int] = {}
        if not self.log_ok:
            return counts
        size = self.log_path.stat().st_size
        with open(self.log_path, "rb") as log:
            log.seek(since if size >= since else 0)  # rotated: read the new file from its start
            for line in log:
                if not self.prefix.search(line):
                    continue
                found = STATEMENT.search(line.decode(errors="replace"))
                if found:
                    word = found.group(1).upper() or "?"
                    counts[word] = counts.get(word, 0) + 1
        return counts


# ---------------------------------------------------------------- the system under test

class System:
    """The processes of the run, how to reach them, and how to take them down."""

    def __init__(self, args, folder: Path):
        self.args = args
        self.folder = folder
        self.groups = Groups()
        self.pg: PostgresCounters | None = None
        self.extra: list[subprocess.Popen] = []

    # -- start
    def start(self) -> None:
        env = {
            "MAX_CONCURRENT_JOBS": "100000", "LOG_LEVEL": "WARNING", "JOB_QUEUE_TIMEOUT_SECONDS": "600",
            # the production cadence (start_market's 1 s beats are for failover tests)
            "NODE_HEARTBEAT_SECONDS": "5", "NODE_OFFLINE_AFTER_SECONDS": "20",
            "RATE_LIMIT_PER_MINUTE": "10000000", "RATE_LIMIT_PER_HOUR": "100000000",
        }
        self.services = services_configured()
        if not self.services:
            self.topology = "runmarket (one process: Daphne + in-process Dramatiq worker), SQLite, local agent"
            self.market = start_market(self.folder, workers=0, env=env)
            agent_port = self.market.process.args[self.market.process.args.index("--agent-port") + 1]
            self.agent_url = f"http://127.0.0.1:{agent_port}"
            self.rest_url = self.stream_url = self.market.url
            web = self.market.process.pid
            agent_pid = self._wait_for_child(web, "runnode")
            self.groups.add("web: runmarket (Daphne + in-process worker)",
                            lambda p: subtree(p, web, exclude={agent_pid}))
            self.groups.add("agent: runnode (+ children)", lambda p: subtree(p, agent_pid))
            self._wait_for_node()
            return

        # bootstrap with start_market (fresh database, migrations, demo customer), then take its
        # runmarket down and start the topology measured, after turning the statement log on
        self.market = start_market(self.folder, agent=False, workers=0, env=env)
        self.market.process.terminate()
        self.market.process.wait(timeout=30)
        admin_url, database = self.market.database
        admin = urlunsplit(urlsplit(admin_url)._replace(path="/postgres"))
        self.pg = PostgresCounters(admin, database, Path(self.args.pg_log))
        self.pg.enable_statement_log()
        env = self.market.env
        if self.args.web == "runweb":
            wsgi_port, asgi_port = free_port(), free_port()
            web_workers = self.args.web_workers or os.cpu_count() or 2
            self.topology = (f"runweb: gunicorn {web_workers} workers x {self.args.web_threads} threads (REST) "
                             f"+ Daphne (/ws/, streams); {self.args.workers} rundramatiq x 1 process x 8 threads")
            process = subprocess.Popen(
                [sys.executable, "manage.py", "runweb", "--wsgi-port", str(wsgi_port), "--asgi-port", str(asgi_port),
                 "--workers", str(web_workers), "--threads", str(self.args.web_threads)],
                cwd=PROJECT_ROOT, env=env, stdout=open(self.folder / "runweb.log", "wb"), stderr=subprocess.STDOUT)
            self.market.process = process
            self.market.log_path = self.folder / "runweb.log"
            self.rest_url, self.stream_url = f"http://127.0.0.1:{wsgi_port}", f"http://127.0.0.1:{asgi_port}"
            self._wait_for_http(process, [f"{self.rest_url}/v1/billing/account",
                                          f"{self.stream_url}/v1/jobs/none/events"])
            daphne = process.pid
            gunicorn = self._wait_for_child(daphne, "gunicorn")
            self.groups.add("web: Daphne (runweb: /ws/, streams)", lambda p: subtree(p, daphne, exclude={gunicorn}))
            self.groups.add("web: gunicorn (master + workers: REST)", lambda p: subtree(p, gunicorn))
        else:
            port = free_port()
            self.topology = f"runmarket (Daphne for everything, --no-agent); {self.args.workers} rundramatiq x 1 x 8"
            process = subprocess.Popen(
                [sys.executable, "manage.py", "runmarket", "--port", str(port), "--no-agent"],
                cwd=PROJECT_ROOT, env=env, stdout=open(self.folder / "runmarket.log", "wb"), stderr=subprocess.STDOUT)
            self.market.process = process
            self.market.log_path = self.folder / "runmarket.log"
            self.rest_url = self.stream_url = f"http://127.0.0.1:{port}"
            self._wait_for_http(process, [f"{self.rest_url}/v1/billing/account"])
            web = process.pid
            self.groups.add("web: runmarket (Daphne)", lambda p: subtree(p, web))
        for index in range(self.args.workers):
            worker = subprocess.Popen(
                [sys.executable, "manage.py", "rundramatiq", "--processes", "1", "--threads", "8",
                 "--queues", env["DRAMATIQ_QUEUE"]],
                cwd=PROJECT_ROOT, env=env, stdout=open(self.folder / f"worker-{index}.log", "wb"),
                stderr=subprocess.STDOUT)
            self.market.workers.append(worker)
        pids = [w.pid for w in self.market.workers]
        self.groups.add(f"workers: {len(pids)} x rundramatiq (+ children)",
                        lambda p: set().union(*(subtree(p, pid) for pid in pids)))
        # the agent dials the node socket on Daphne; it enrols through the same port
        self.market.url = self.stream_url
        agent = self.market.add_agent(self.folder / "agent", "bench-node")
        self.agent_url = agent.url
        self.groups.add("agent: runnode (+ children)", lambda p: subtree(p, agent.process.pid))
        self.groups.add("postgres (all its processes)", lambda p: named_trees(p, {"postgres"}))
        pg = self.pg
        self.groups.add(PART + "backends of the bench database", lambda p: pg.backend_pids() & set(p))
        self.groups.add("rabbitmq (beam.smp + children, epmd)", lambda p: named_trees(p, {"beam.smp", "epmd"}))
        self.groups.add("redis (redis-server)", lambda p: named_trees(p, {"redis-server"}))
        self._wait_for_node()

    def _wait_for_child(self, parent: int, word: str, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            procs = snapshot()
            for pid in subtree(procs, parent) - {parent}:
                if procs[pid].ppid == parent and word in cmdline(pid):
                    return pid
            time.sleep(0.2)
        raise RuntimeError(f"no child process of {parent} with {word!r} in its command line")

    def _wait_for_http(self, process: subprocess.Popen, urls: list[str], timeout: float = 90) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            try:
                for url in urls:
                    requests.get(url, timeout=2)
                return
            except requests.RequestException:
                time.sleep(0.2)
        raise RuntimeError(f"web tier did not start:\n{self.market.log()[-3000:]}")

    def _wait_for_node(self) -> None:
        """A first job completes: the node is online, connections and caches are warm."""
        deadline = time.monotonic() + 90
        while True:
            try:
                asyncio.run(run_sequential(lambda s: market_job(s, self.rest_url, self.stream_url,
                                                                 self.market.api_key), 1))
                return
            except Exception as exc:  # noqa: BLE001 (the node may still be enrolling)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no job completed: {exc}\n{self.market.log()[-3000:]}") from exc
                time.sleep(0.5)

    def customers(self, count: int) -> list[str]:
        """API keys of ``count`` customers with funds: the demo customer and count - 1 more."""
        code = (
            "import json\n"
            "from billing.services import funds_deposit\n"
            "from marketplace.services import api_key_create, customer_get_or_create\n"
            "keys = []\n"
            f"for i in range({count - 1}):\n"
            "    c = customer_get_or_create(name=f'bench-customer-{i}')\n"
            "    funds_deposit(customer=c, amount=10**24, reason='bench funds')\n"
            "    keys.append(api_key_create(customer=c, name='bench').secret)\n"
            "print(json.dumps(keys))"
        )
        return [self.market.api_key, *json.loads(self.market.shell(code))]

    # -- stop
    def stop(self) -> None:
        queue = self.market.env.get("DRAMATIQ_QUEUE")
        prefix = self.market.env.get("CACHE_KEY_PREFIX")
        try:
            self.market.stop()  # processes (web, workers, agent), then DROP DATABASE
        finally:
            if self.pg is not None:
                self.pg.conn.close()
            if self.services:
                self._delete_queues(queue)
                removed = self._delete_redis_keys(prefix)
                print(f"cleaned up: processes, database {self.market.database[1]}, queues {queue}(.DQ, .XQ), "
                      f"{removed} Redis keys {prefix}*")

    @staticmethod
    def _delete_queues(queue: str | None) -> None:
        url = os.environ.get("DRAMATIQ_BROKER_URL", "")
        if not queue or not url.startswith("amqp://"):
            return
        import pika

        with pika.BlockingConnection(pika.URLParameters(url)) as conn:
            channel = conn.channel()
            for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):  # Dramatiq's queue, delay queue, dead letters
                channel.queue_delete(name)

    @staticmethod
    def _delete_redis_keys(prefix: str | None) -> int:
        if not prefix or not os.environ.get("REDIS_URL"):
            return 0
        import redis

        client = redis.Redis.from_url(os.environ["REDIS_URL"])
        removed = 0
        for pattern in (f"{prefix}*", f"*:{prefix}*"):
            batch = list(client.scan_iter(match=pattern, count=1000))
            if batch:
                removed += client.delete(*batch)
        return removed


# ---------------------------------------------------------------- phases

class Phase:
    def __init__(self, name: str, jobs: int, seconds: float, latencies: list[float]):
        self.name, self.jobs, self.seconds, self.latencies = name, jobs, seconds, latencies
        self.cpu: dict[str, float] = {}
        self.client_cpu = 0.0
        self.statements: dict[str, int] = {}
        self.xacts = 0
        self.others_cores = 0.0


def self_cpu() -> float:
    times = os.times()
    return times.user + times.system


def measure(system: System, name: str, label: str, work, jobs: int) -> Phase:
    pg = system.pg
    if pg:
        pg.tidy()
    before_cpu, before_client, before_busy = system.groups.take(), self_cpu(), machine_busy_ticks()
    before_log = pg.log_offset() if pg else 0
    before_xacts = pg.xacts() if pg else 0
    latencies, seconds = work()
    after_cpu, after_client, after_busy = system.groups.take(), self_cpu(), machine_busy_ticks()
    phase = Phase(name, len(latencies) or jobs, seconds, latencies)
    phase.label = label
    phase.cpu = Groups.seconds(before_cpu, after_cpu)
    phase.client_cpu = after_client - before_client
    ours = sum(v for k, v in phase.cpu.items() if not k.startswith(PART)) + phase.client_cpu
    phase.others_cores = max(0.0, (after_busy - before_busy) / CLOCK_TICKS - ours) / max(seconds, 1e-9)
    if pg:
        phase.statements = pg.statements(before_log)
        time.sleep(1.5)  # backends flush their transaction counts at most once a second
        phase.xacts = pg.xacts() - before_xacts
    return phase


def ms(value: float) -> str:
    return f"{value * 1000:.2f}"


def report(system: System, phases: list[Phase], idle: Phase | None) -> None:
    print(f"\n{'phase':34} {'jobs':>5} {'wall s':>7} {'jobs/s':>7} {'p50 ms':>8} {'p95 ms':>8}")
    for phase in phases:
        lat = sorted(phase.latencies)
        p95 = lat[min(len(lat) - 1, int(len(lat) * 0.95))]
        print(f"{phase.name:34} {phase.jobs:5} {phase.seconds:7.2f} {phase.jobs / phase.seconds:7.1f} "
              f"{ms(statistics.median(lat)):>8} {ms(p95):>8}")

    width = 12
    names = list(system.groups.selectors)
    header = "".join(f"{p.label:>{width}}" for p in phases)
    print(f"\nCPU ms per job ({CLOCK_TICKS} ticks/s from /proc/<pid>/stat; delta over each phase / jobs)")
    print(f"{'process group':46}{header}" + (f"{'idle ms/s':>{width}}" if idle else ""))
    for group in names:
        row = "".join(f"{ms(p.cpu[group] / p.jobs):>{width}}" for p in phases)
        idle_col = f"{ms(idle.cpu[group] / idle.seconds):>{width}}" if idle else ""
        print(f"{group[:45]:46}{row}{idle_col}")
    def total(phase, only_ours: bool = False) -> float:
        return sum(v for k, v in phase.cpu.items() if not k.startswith(PART)
                   and not (only_ours and k.startswith("postgres"))) + \
            (sum(v for k, v in phase.cpu.items() if k.startswith(PART)) if only_ours else 0)

    row = "".join(f"{ms(total(p) / p.jobs):>{width}}" for p in phases)
    idle_col = f"{ms(total(idle) / idle.seconds):>{width}}" if idle else ""
    print(f"{'TOTAL (every process of the run)':46}{row}{idle_col}")
    if any(k.startswith(PART) for k in names):
        row = "".join(f"{ms(total(p, True) / p.jobs):>{width}}" for p in phases)
        idle_col = f"{ms(total(idle, True) / idle.seconds):>{width}}" if idle else ""
        print(f"{'TOTAL, PostgreSQL = bench database backends':46}{row}{idle_col}")
    row = "".join(f"{ms(p.client_cpu / p.jobs):>{width}}" for p in phases)
    print(f"{'bench client (this process; not in TOTAL)':46}{row}")
    row = "".join(f"{p.others_cores:>{width}.2f}" for p in phases)
    idle_col = f"{idle.others_cores:>{width}.2f}" if idle else ""
    print(f"{'rest of the machine (cores busy, avg)':46}{row}{idle_col}")

    if system.pg:
        pg = system.pg
        print(f"\nPostgreSQL per job (database {pg.database}; log_statement=all on it, "
              f"counted in {pg.log_path}; transactions = pg_stat_database commits + rollbacks)")
        print(f"{'':46}{header}" + (f"{'idle /s':>{width}}" if idle else ""))
        words = sorted({w for p in [*phases, *([idle] if idle else [])] for w in p.statements},
                       key=lambda w: -sum(p.statements.get(w, 0) for p in phases))
        total_row = "".join(f"{sum(p.statements.values()) / p.jobs:>{width}.1f}" for p in phases)
        idle_col = f"{sum(idle.statements.values()) / idle.seconds:>{width}.1f}" if idle else ""
        print(f"{'statements':46}{total_row}{idle_col}")
        for word in words:
            row = "".join(f"{p.statements.get(word, 0) / p.jobs:>{width}.1f}" for p in phases)
            idle_col = f"{idle.statements.get(word, 0) / idle.seconds:>{width}.1f}" if idle else ""
            print(f"{'  ' + word:46}{row}{idle_col}")
        row = "".join(f"{p.xacts / p.jobs:>{width}.1f}" for p in phases)
        idle_col = f"{idle.xacts / idle.seconds:>{width}.1f}" if idle else ""
        print(f"{'transactions':46}{row}{idle_col}")
    else:
        print("\nSQL counts: n/a on SQLite (the embedded default)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="rundramatiq processes (services only)")
    parser.add_argument("--web", choices=["runweb", "runmarket"], default="runweb", help="web tier on services")
    parser.add_argument("--web-workers", type=int, default=0, help="gunicorn workers (default: runweb's, CPUs)")
    parser.add_argument("--web-threads", type=int, default=4)
    parser.add_argument("--idle-seconds", type=float, default=5, help="background CPU and SQL with no jobs")
    parser.add_argument("--history", type=int, default=0,
                        help="finished jobs put in the database before measuring (services only)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also measure, at --concurrency clients, a submit alone (the job runs unwatched) "
                             "and the event stream of a finished job alone")
    parser.add_argument("--pg-log", default="/var/log/postgresql/postgresql-15-main.log")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-dispatch-") as folder:
        system = System(args, Path(folder))
        started = time.monotonic()
        try:
            system.start()
            keys = system.customers(args.concurrency)
            if args.history and system.pg:
                system.pg.add_history(args.history)
            print(f"\ndispatch benchmark: {system.topology}")
            print(f"  load average before the run: {Path('/proc/loadavg').read_text().split()[0]}")
            print(f"  {'PostgreSQL + RabbitMQ + Redis' if system.services else 'embedded default (nothing set)'}; "
                  f"{os.cpu_count()} cores shared by the client, the servers and the services; "
                  f"started in {time.monotonic() - started:.1f}s")
            if system.pg and not system.pg.autovacuum:
                print("  PostgreSQL's autovacuum is off on this server: the bench runs VACUUM ANALYZE before "
                      "each phase in its place")
            if args.history and system.pg:
                print(f"  history: {args.history} finished jobs in the database before the first phase")
            rest, stream, key = system.rest_url, system.stream_url, system.market.api_key

            def sequential(call):
                def work():
                    asyncio.run(run_sequential(call, 5))  # warm
                    t0 = time.perf_counter()
                    latencies = asyncio.run(run_sequential(call, args.jobs))
                    return latencies, time.perf_counter() - t0
                return work

            def clients(calls):
                def work():
                    asyncio.run(run_clients(calls, len(calls)))  # warm: one job each
                    return asyncio.run(run_clients(calls, args.jobs))
                return work

            idle = None
            time.sleep(2)  # let start-up work (imports, first connections) finish
            if args.idle_seconds > 0:
                idle = measure(system, "idle", "idle", lambda: ([], time.sleep(args.idle_seconds) or args.idle_seconds), 1)
            phases = [
                measure(system, "agent directly: sequential", "agent seq",
                        sequential(lambda s: direct_job(s, system.agent_url)), args.jobs),
                measure(system, "market: sequential", "market seq",
                        sequential(lambda s: market_job(s, rest, stream, key)), args.jobs),
                measure(system, f"market: {args.concurrency} clients, 1 customer", f"{args.concurrency}c/1cust",
                        clients([lambda s: market_job(s, rest, stream, key)] * args.concurrency), args.jobs),
                measure(system, f"market: {args.concurrency} customers x 1 client", f"{args.concurrency}cust",
                        clients([(lambda s, k=k: market_job(s, rest, stream, k)) for k in keys]), args.jobs),
            ]
            if args.breakdown:
                finished = asyncio.run(run_finished_job(rest, stream, key))
                phases += [
                    measure(system, f"breakdown: {args.concurrency}c submit only", "submit",
                            submits_drained(rest, key, args.concurrency, args.jobs), args.jobs),
                    measure(system, f"breakdown: {args.concurrency}c ended stream", "ended sse",
                            clients([lambda s: finished_stream(s, stream, key, finished)] * args.concurrency),
                            args.jobs),
                ]
            report(system, phases, idle)
            direct, seq = phases[0], phases[1]
            print(f"\nsequential p50: marketplace {ms(statistics.median(seq.latencies))} ms vs agent directly "
                  f"{ms(statistics.median(direct.latencies))} ms "
                  f"({statistics.median(seq.latencies) / statistics.median(direct.latencies):.1f}x)")
        finally:
            system.stop()


if __name__ == "__main__":
    main()
