"""The job path end to end, under load and under failure: nodes dial in over one socket each,
the slot scheduler assigns in short Dramatiq tasks, and a running job holds no thread.

Every test starts its own market (``start_market``: runmarket; on services a fresh
PostgreSQL database and two ``rundramatiq`` workers) and its own agents, whose only
container is ``nap`` (tests/support/nap_service.py): an asyncio HTTP service in this
process that sleeps per request and counts the calls per job marker, so "ran once"
is counted where the work happens, not only in the marketplace's records.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support.waiting import wait_for
from tests.support.market import (
    delete_queues, process_tree, queue_names, services_configured, start_market, thread_count,
)
from tests.support.nap_service import NapService

needs_services = pytest.mark.skipif(
    not services_configured(),
    reason="needs PostgreSQL, RabbitMQ and Redis (DATABASE_URL, DRAMATIQ_BROKER_URL, REDIS_URL): "
           "rundramatiq workers and a database the harness creates exist only there",
)


@pytest.fixture
def nap():
    service = NapService().start()
    yield service
    service.stop()


@pytest.fixture
def markets():
    """Start markets with ``markets(tmp_path, ...)``; every one is stopped, whatever happened."""
    started = []

    def start(*args, **kwargs):
        market = start_market(*args, **kwargs)
        started.append(market)
        return market

    yield start
    for market in started:
        market.stop()


# --- helpers ---------------------------------------------------------------------------------


def _submit_all(market, bodies: list[dict], clients: int = 16) -> list[str]:
    """POST /v1/jobs for every body from ``clients`` threads (one keep-alive session each)."""
    local = threading.local()

    def submit(body: dict) -> str:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.headers.update(market.headers())
        for attempt in range(5):
            try:
                response = session.post(f"{market.url}/v1/jobs", json=body, timeout=60)
                break
            except requests.ConnectionError:
                if attempt == 4:
                    raise
                time.sleep(0.5)
        assert response.status_code == 201, response.text
        return response.json()["job_id"]

    with ThreadPoolExecutor(max_workers=clients) as pool:
        return list(pool.map(submit, bodies))


def _nap_job(marker: str, seconds: float) -> dict:
    return {"model": "nap", "input": {"seconds": seconds, "marker": marker}}


def _count(market, where: str, params: tuple = ()) -> int:
    return market.sql(f"SELECT count(*) FROM jobs_job WHERE {where}", params)[0][0]


def _wait_for(what: str, check, timeout: float, interval: float = 0.5, describe=None):
    return wait_for(check, timeout, interval,
                    message=lambda: f"{what}: not after {timeout} s" + (f"; {describe()}" if describe else ""))


def _statuses(market) -> dict[str, int]:
    return dict(market.sql("SELECT status, count(*) FROM jobs_job GROUP BY status"))


def _attempt_endings(market) -> dict[str, int]:
    """How attempts ended, their errors with node and job ids left out."""
    import re
    from collections import Counter

    rows = market.sql("SELECT status, error FROM jobs_jobattempt")
    return dict(Counter(f"{status}: {re.sub(r'(node|job)_[0-9a-f]+', '<id>', error or '')}" for status, error in rows))


def _online_nodes(market) -> int:
    return market.sql("SELECT count(*) FROM nodes_node WHERE channel_name <> ''")[0][0]


def _jobs(market, job_ids: list[str]) -> dict[str, dict]:
    """public id -> status, attempts, billing status, input, result (read from the database)."""
    rows = market.sql("SELECT public_id, status, attempt_count, billing_status, input, result FROM jobs_job")
    wanted = set(job_ids)
    jobs = {}
    for public_id, status, attempts, billing, job_input, result in rows:
        if public_id in wanted:
            load = lambda v: json.loads(v) if isinstance(v, str) else v  # noqa: E731 - SQLite gives text
            jobs[public_id] = {"status": status, "attempts": attempts, "billing": billing,
                               "input": load(job_input), "result": load(result)}
    return jobs


def _settlements_per_job(market) -> dict[int, int]:
    return dict(market.sql("SELECT job_id, count(*) FROM billing_ledgertransaction WHERE kind = 'settle' "
                           "GROUP BY job_id"))


def _money_adds_up(market) -> bool:
    return market.shell(
        "from billing.ledger import balances_match_entries, conservation_holds; "
        "print(conservation_holds() and balances_match_entries())"
    ) == "True"


def _late_naps(market, nap) -> list:
    """For naps that began long after the first: when their job was made, assigned, started, and where."""
    late = nap.late(after=30)[:5]
    if not late or not market.database:  # SQLite gives its times as text
        return []
    first = min(nap.began.values())
    rows = []
    for marker, began in late:
        row = market.sql("SELECT j.created_at, j.assigned_at, j.started_at, n.name FROM jobs_job j "
                         "LEFT JOIN nodes_node n ON n.id = j.node_id WHERE CAST(j.input AS TEXT) LIKE %s",
                         (f'%"{marker}"%',))
        if row:
            created, assigned, started, node = row[0]
            at = lambda v: round(v.timestamp() - first, 1) if v else None  # noqa: E731
            rows.append((marker, round(began - first, 1), at(created), at(assigned), at(started), node))
    return rows


def _database_connections(market) -> int:
    """Backends connected to the market's own PostgreSQL database (this query's excluded)."""
    return market.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                      "AND pid <> pg_backend_pid()")[0][0]


# --- 2,000 jobs at once ----------------------------------------------------------------------

AGENTS = 20
SLOTS_PER_AGENT = 100
CONCURRENT_JOBS = AGENTS * SLOTS_PER_AGENT  # 2,000
# a nap lasts this long unless the test ends it first (after it has counted what it came for)
NAP_SECONDS = 150
MAX_THREADS = 100
MAX_DATABASE_CONNECTIONS = 60


@pytest.mark.timeout(600)
def test_2000_jobs_run_at_once_across_20_agents_and_no_thread_or_connection_waits_on_one(tmp_path, nap, markets):
    market = markets(tmp_path, agent=False, env={
        "MAX_CONCURRENT_JOBS": "5000", "JOB_QUEUE_TIMEOUT_SECONDS": "300",
        # 20 nodes beating every second would be most of the load; a beat every 5 s is production's
        "NODE_HEARTBEAT_SECONDS": "5", "NODE_OFFLINE_AFTER_SECONDS": "30",
    })
    names = [f"napper-{i:02d}" for i in range(AGENTS)]
    market.add_agents(tmp_path, names, containers=[nap.container(SLOTS_PER_AGENT)], capacity=SLOTS_PER_AGENT)
    _wait_for("every agent online", lambda: _online_nodes(market) == AGENTS, 30)

    processes = {"runmarket": [market.process.pid]}
    for index, worker in enumerate(market.workers):
        processes[f"rundramatiq-{index}"] = process_tree(worker.pid)
    idle_threads = {name: max(map(thread_count, pids)) for name, pids in processes.items()}

    peak_threads = dict(idle_threads)
    peak_connections = 0
    peak_running = 0
    stop_sampling = threading.Event()

    def sample() -> None:
        nonlocal peak_connections, peak_running
        while not stop_sampling.is_set():
            for name, pids in processes.items():
                peak_threads[name] = max(peak_threads[name], *map(thread_count, pids))
            if market.database:
                peak_connections = max(peak_connections, _database_connections(market))
            peak_running = max(peak_running, _count(market, "status = 'running'"))
            stop_sampling.wait(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    try:
        job_ids = _submit_all(market, [_nap_job(f"m{i}", NAP_SECONDS) for i in range(CONCURRENT_JOBS)], clients=8)
        submitted = time.monotonic() - started

        def describe() -> str:
            return (f"submitted in {submitted:.1f} s; the service holds {nap.stats()[0]} (peak {nap.stats()[1]}); "
                    f"naps began over {nap.spread():.1f} s; cut short {nap.cut_short[:5]} ({len(nap.cut_short)}); "
                    f"began late {_late_naps(market, nap)}; "
                    f"jobs by status {_statuses(market)}; attempts {_attempt_endings(market)}; peak running {peak_running}; nodes (name, capacity, strikes, "
                    f"connected) {market.sql('SELECT name, capacity, strikes, channel_name <> %s FROM nodes_node', ('',))}"
                    f"\n{market.log()[-3000:]}")

        # every job is on a node at once: the service holds them all, the marketplace lists them running
        _wait_for("2,000 naps in flight at once", lambda: nap.stats()[1] >= CONCURRENT_JOBS, 120, describe=describe)
        all_in_flight = time.monotonic() - started
        _wait_for("2,000 jobs running at once", lambda: peak_running >= CONCURRENT_JOBS, 60, describe=describe)
        time.sleep(3)  # a few samples more with all of them running
    finally:
        nap.release()  # the naps end now; the results come back over the sockets
    _wait_for("every job finished",
              lambda: _count(market, "status IN ('completed', 'failed', 'cancelled', 'expired')") >= CONCURRENT_JOBS,
              180, interval=1)
    finished = time.monotonic() - started
    stop_sampling.set()
    sampler.join(timeout=30)

    print(f"\n2,000 jobs: submitted in {submitted:.1f} s, all in flight at {all_in_flight:.1f} s, all finished at "
          f"{finished:.1f} s; peak in flight at the service {nap.stats()[1]}, peak running {peak_running}; "
          f"threads idle {idle_threads} peak {peak_threads}; peak database connections {peak_connections}")

    jobs = _jobs(market, job_ids)
    assert len(jobs) == CONCURRENT_JOBS
    not_once = {k: v for k, v in jobs.items()
                if (v["status"], v["attempts"], v["billing"]) != ("completed", 1, "settled")}
    lost = market.sql("SELECT error, count(*) FROM jobs_jobattempt WHERE status <> 'succeeded' GROUP BY error "
                      "ORDER BY count(*) DESC LIMIT 5")
    assert not not_once, f"{len(not_once)} jobs did not complete once, settled: {list(not_once.items())[:5]}; " \
                         f"attempts that ended otherwise, by error: {lost}"
    assert all(v["result"]["marker"] == v["input"]["marker"] for v in jobs.values())
    assert set(nap.calls) == {f"m{i}" for i in range(CONCURRENT_JOBS)}
    assert set(nap.calls.values()) == {1}, "every job ran on a node exactly once"
    assert market.sql("SELECT count(*) FROM jobs_jobattempt")[0][0] == CONCURRENT_JOBS, "each job dispatched once"
    settled = _settlements_per_job(market)
    assert len(settled) == CONCURRENT_JOBS and set(settled.values()) == {1}
    assert _money_adds_up(market)
    for name, threads in peak_threads.items():
        assert threads < MAX_THREADS, f"{name} ran {threads} threads with 2,000 jobs running (idle: {idle_threads})"
    if market.database:
        assert 0 < peak_connections < MAX_DATABASE_CONNECTIONS, f"{peak_connections} database connections"


# --- the web process restarted mid-job --------------------------------------------------------

# a node reconnects within this long of the marketplace listening again (backoff 0.5 s doubling,
# jittered by up to half, while it was down)
RECONNECT_SECONDS = 15


@pytest.mark.timeout(300)
def test_a_web_restart_mid_job_loses_no_job_and_bills_each_once(tmp_path, nap, markets):
    market = markets(tmp_path, agent=False, env={
        "MAX_CONCURRENT_JOBS": "100", "JOB_QUEUE_TIMEOUT_SECONDS": "120",
        # the restart takes a few seconds: a node is not given up for being silent through it
        "NODE_OFFLINE_AFTER_SECONDS": "30",
    })
    agents = market.add_agents(tmp_path, ["east", "west"], containers=[nap.container(10)], capacity=10)
    _wait_for("both agents online", lambda: _online_nodes(market) == 2, 30)
    # some naps end while the web is down (their results wait in the agents' outboxes), some after
    seconds = [2, 3, 4, 5, 6, 6, 8, 10, 12, 14]
    job_ids = _submit_all(market, [_nap_job(f"r{i}", s) for i, s in enumerate(seconds)], clients=4)
    _wait_for("all ten running", lambda: _count(market, "status = 'running'") == len(job_ids), 30, interval=0.1)

    went_down = time.time()
    market.restart_web()
    listening = time.monotonic()

    def reconnected() -> bool:
        rows = market.sql("SELECT channel_name, connected_at FROM nodes_node")
        return len(rows) == 2 and all(channel and _epoch(at) > went_down for channel, at in rows)

    _wait_for(f"both agents reconnected within {RECONNECT_SECONDS} s", reconnected, RECONNECT_SECONDS, interval=0.1)
    reconnect = time.monotonic() - listening
    # the marketplace records the socket during its handshake; the agent logs it once its side
    # completes, a moment later on a loaded machine
    _wait_for("both agents say they reconnected", lambda: all(
        agent.log().count("connected to the marketplace socket") >= 2 for agent in agents), 10, interval=0.1)

    jobs = {job_id: market.wait(job_id, timeout=60) for job_id in job_ids}
    print(f"\nweb restart: {time.time() - went_down:.1f} s from going down to every job finished; nodes back "
          f"{reconnect:.1f} s after the web listened again")
    assert all(j["status"] == "completed" and j["attempts"] == 1 for j in jobs.values()), jobs
    assert all(j["billing"]["status"] == "settled" for j in jobs.values()), jobs
    assert [jobs[job_id]["result"] for job_id in job_ids] == [
        {"slept": s, "marker": f"r{i}"} for i, s in enumerate(seconds)]
    assert set(nap.calls.values()) == {1} and len(nap.calls) == len(job_ids), "each job ran once"
    settled = _settlements_per_job(market)
    assert len(settled) == len(job_ids) and set(settled.values()) == {1}, "billed once each"
    assert _money_adds_up(market)


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie (an orphan waits for init to reap it)."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _epoch(moment) -> float:
    """A timestamp column as Unix seconds (PostgreSQL gives a datetime, SQLite text in UTC)."""
    from datetime import datetime, timezone

    if moment is None:
        return 0.0
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


# --- a worker SIGKILLed while it assigns ------------------------------------------------------


@needs_services
@pytest.mark.timeout(300)
def test_a_worker_sigkilled_mid_assignment_and_every_job_runs_once(tmp_path, nap, markets):
    market = markets(tmp_path, agent=False, env={
        "MAX_CONCURRENT_JOBS": "1000", "JOB_QUEUE_TIMEOUT_SECONDS": "120", "NODE_OFFLINE_AFTER_SECONDS": "30",
    })
    market.add_agents(tmp_path, ["kilo", "lima", "mike"], containers=[nap.container(10)], capacity=10)
    _wait_for("three agents online", lambda: _online_nodes(market) == 3, 30)
    victim = market.workers[0]
    victims = process_tree(victim.pid)
    assert len(victims) >= 2, "rundramatiq runs a parent and its forked worker"

    bodies = [_nap_job(f"k{i}", 2) for i in range(100)]
    submitting = ThreadPoolExecutor(max_workers=1)
    try:
        first = submitting.submit(_submit_all, market, bodies[:50], 4)
        # kill it while jobs are coming in and slots keep freeing: assignments are under way
        _wait_for("assignments under way", lambda: _count(market, "attempt_count > 0") >= 20, 30, interval=0.05)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
        job_ids = first.result(timeout=120) + _submit_all(market, bodies[50:], 4)
    finally:
        submitting.shutdown(wait=True)
    _wait_for("its forked children dead too", lambda: not any(map(_alive, victims)), 10, interval=0.1)

    jobs = {job_id: market.wait(job_id, timeout=120) for job_id in job_ids}
    attempts = sorted(j["attempts"] for j in jobs.values())
    lost = market.sql("SELECT error FROM jobs_jobattempt WHERE status <> 'succeeded'")
    print(f"\nworker killed: attempts per job {dict((a, attempts.count(a)) for a in set(attempts))}; "
          f"attempts lost: {len(lost)}, e.g. {lost[:2]}")
    assert all(j["status"] == "completed" for j in jobs.values()), [j for j in jobs.values() if j["status"] != "completed"]
    assert len(nap.calls) == 100 and set(nap.calls.values()) == {1}, (
        f"ran more than once: {[m for m, n in nap.calls.items() if n != 1]}")
    settled = _settlements_per_job(market)
    assert len(settled) == 100 and set(settled.values()) == {1}
    assert _money_adds_up(market)


# --- the harness cleans up after itself -------------------------------------------------------


@needs_services
def test_stopping_a_market_deletes_its_broker_queues_and_its_database(tmp_path, markets):
    import pika
    import psycopg
    from urllib.parse import urlsplit, urlunsplit

    market = markets(tmp_path, agent=False)
    queue = market.env["DRAMATIQ_QUEUE"]
    broker = market.env["DRAMATIQ_BROKER_URL"]
    _, database = market.database

    def queue_exists(name: str) -> bool:
        with pika.BlockingConnection(pika.URLParameters(broker)) as conn:
            try:
                conn.channel().queue_declare(name, passive=True)
                return True
            except pika.exceptions.ChannelClosedByBroker as closed:
                assert closed.reply_code == 404, closed
                return False

    def database_exists() -> bool:
        admin = urlunsplit(urlsplit(os.environ["DATABASE_URL"])._replace(path="/postgres"))
        with psycopg.connect(admin, autocommit=True) as conn:
            return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is not None

    # the workers declared the queues when they started consuming
    assert all(queue_exists(name) for name in queue_names(queue)) and database_exists()
    try:
        market.stop()
        assert not any(queue_exists(name) for name in queue_names(queue)), "the queues outlived the market"
        assert not database_exists(), f"database {database} outlived the market"
    finally:
        delete_queues(broker, queue)  # idempotent; so a failure above leaves nothing behind either
