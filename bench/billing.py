#!/usr/bin/env python
"""The cost of money, two ways, on a fresh database (SQLite by default, PostgreSQL when
DATABASE_URL is set), in-process (no HTTP server, no broker).

1. Money pairs: each thread reserves a job's worst case (``job_create_reserved``: insert the job,
   hold the reservation) and settles it (``job_transition`` to completed with a verified receipt:
   charge, pay the miner, keep the fee, release the rest), over and over. Printed as
   reserve+settle pairs/s for N threads on one hot customer row and for N customers.
2. Submits: job submits per second through the API with reservations, against the same
   without the money steps.
Usage: .venv/bin/python bench/billing.py [--pairs 1600] [--submits 300] [--threads 16]
"""
from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _admin_url(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/postgres"))


def _fresh_postgres(url: str) -> tuple[str, str]:
    import psycopg

    name = f"bench_billing_{secrets.token_hex(4)}"
    with psycopg.connect(_admin_url(url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}")), name


def _drop_postgres(url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(_admin_url(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def setup_database() -> tuple | None:
    os.environ["MARKETPLACE_VAR_DIR"] = tempfile.mkdtemp()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
    os.environ.pop("DRAMATIQ_BROKER_URL", None)  # the broker is not what is measured here
    created = None
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        url, name = _fresh_postgres(os.environ["DATABASE_URL"])
        created = (os.environ["DATABASE_URL"], name)
        os.environ["DATABASE_URL"] = url
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return created


@contextmanager
def without_money():
    from jobs.services import submit

    # the reservation is the submit's one money step (jobs.services.money.job_funds_reserve)
    saved = submit.job_funds_reserve
    submit.job_funds_reserve = lambda **kwargs: None
    try:
        yield
    finally:
        submit.job_funds_reserve = saved


def run(clients, submits: int, threads: int) -> float:
    from django.db import connections

    per_thread = submits // threads
    errors = []

    def work(client) -> None:
        try:
            for _ in range(per_thread):
                response = client.post("/v1/jobs", {"model": "echo", "input": "x"}, format="json")
                if response.status_code != 201:
                    errors.append(response.content)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=work, args=(clients[i % len(clients)],)) for i in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"submits failed: {errors[:3]}")
    return per_thread * threads / elapsed


class LockWaits:
    """Samples, every 5 ms, how many PostgreSQL backends of this database wait on a lock."""

    def __init__(self) -> None:
        from django.db import connection

        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = None
        if connection.vendor == "postgresql":
            self._thread = threading.Thread(target=self._run, args=(connection.settings_dict["NAME"],), daemon=True)
            self._thread.start()

    def _run(self, name: str) -> None:
        import psycopg

        url = urlunsplit(urlsplit(os.environ["DATABASE_URL"])._replace(path=f"/{name}"))
        with psycopg.connect(url, autocommit=True) as conn:
            while not self._stop.wait(0.005):
                row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                                   "AND wait_event_type = 'Lock'", (name,)).fetchone()
                self.samples.append(row[0])

    def stop(self) -> float | None:
        self._stop.set()
        if self._thread is None:
            return None
        self._thread.join()
        return sum(self.samples) / max(len(self.samples), 1)


def pairs(customers, node, pairs_total: int, threads: int) -> float:
    """reserve+settle pairs/s: ``threads`` threads, thread i working for customers[i % len]."""
    from django.db import connections

    from billing.selectors import pricing_policy_current
    from billing.services import quote_job
    from jobs.models import DEFAULT_TIMEOUT_SECONDS, Job, JobStatus
    from jobs.services.lifecycle import job_transition
    from jobs.services.submit import job_create_reserved
    from marketplace.authentication import CustomerPrincipal
    from marketplace.models import ApiKey

    policy = pricing_policy_current()
    quote = quote_job(model="echo", gpu_type="", gpu_count=0, priority="normal", expected_seconds=10,
                      timeout_seconds=DEFAULT_TIMEOUT_SECONDS, policy=policy)
    principals = [CustomerPrincipal(c, ApiKey.objects.filter(customer=c).first()) for c in customers]
    per_thread = pairs_total // threads
    errors = []
    statements = []

    def count(execute, sql, params, many, context):
        statements.append(1)
        return execute(sql, params, many, context)

    def pair(principal) -> None:
        job = job_create_reserved(principal=principal, quote=quote,
                                  fields=dict(model="echo", input="x", estimated_time_seconds=10))
        Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, node=node)
        job.status, job.node = JobStatus.RUNNING, node
        receipt = {"body": {"duration_ms": "1500"}, "hash": f"h{job.pk}", "signature": "s", "signer": "k"}
        if not job_transition(job=job, expected=JobStatus.RUNNING, new_status=JobStatus.COMPLETED,
                              reason="bench", receipt=receipt, receipt_verified=True, receipt_hash=receipt["hash"]):
            errors.append(f"job {job.pk} did not complete")

    def work(principal) -> None:
        from django.db import connection

        try:
            with connection.execute_wrapper(count):
                for _ in range(per_thread):
                    pair(principal)
        except Exception as exc:  # noqa: BLE001 - reported below, the run is void
            errors.append(repr(exc))
        finally:
            connections.close_all()

    workers = [threading.Thread(target=work, args=(principals[i % len(principals)],)) for i in range(threads)]
    waiting = LockWaits()
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    pairs.lock_waits = waiting.stop()
    if errors:
        raise SystemExit(f"pairs failed: {errors[:3]}")
    pairs.statements = len(statements) / (per_thread * threads)
    return per_thread * threads / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=1600, help="reserve+settle pairs per run (0: skip)")
    parser.add_argument("--submits", type=int, default=300, help="API submits per run (0: skip)")
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    created = setup_database()
    try:
        from django.db import connection

        from jobs import tasks
        from tests import factories

        tasks.dispatch_job.send = lambda *a, **k: None
        node = factories.node(models=("echo",))
        customers = [factories.customer(f"bench-{i}", max_concurrent_jobs=10**6, rate_limit_per_minute=10**6,
                                        rate_limit_per_hour=10**7) for i in range(args.threads)]
        clients = [factories.api_client(c) for c in customers]
        for client in clients[:2]:
            client.post("/v1/jobs", {"model": "echo", "input": "warm"}, format="json")
        print(f"\nbilling benchmark on {connection.vendor}, in-process, {os.cpu_count()} cores\n")
        if args.pairs:
            from billing.ledger import conservation_holds

            pairs(customers[:1], node, 100, 1)  # warm: connections, first accounts, the policy
            one = pairs(customers[:1], node, args.pairs, 1)
            per_pair = pairs.statements
            hot = pairs(customers[:1], node, args.pairs, args.threads)
            hot_waits = pairs.lock_waits
            spread = pairs(customers, node, args.pairs, args.threads)
            spread_waits = pairs.lock_waits
            print(f"reserve+settle pairs/s:  1 thread {one:7.1f} | {args.threads} threads, one customer {hot:7.1f}"
                  f" | {args.threads} threads, {len(customers)} customers {spread:7.1f}")
            if hot_waits is not None:
                print(f"backends waiting on a lock, on average: {hot_waits:.2f} (one customer), "
                      f"{spread_waits:.2f} ({len(customers)} customers)")
            print(f"SQL statements per pair (the job's own included, commits not): {per_pair:.1f}")
            print(f"money conserved after the runs: {conservation_holds()}\n")
        for threads in ((1, args.threads) if args.submits else ()):
            with_money = run(clients, args.submits, threads)
            with without_money():
                bare = run(clients, args.submits, threads)
            print(f"{threads:2} thread(s): {with_money:7.1f} submits/s with reservations, {bare:7.1f} without; "
                  f"money costs {bare / with_money:.2f}x")
    finally:
        if created:
            from django.db import connections

            connections.close_all()
            _drop_postgres(*created)


if __name__ == "__main__":
    main()
