#!/usr/bin/env python
"""The cost of money: job submits per second with reservations against the same without.

Runs the submit path in-process (Django's test client, no HTTP server) on a fresh
database: SQLite by default, or PostgreSQL when DATABASE_URL is set. "Without" skips
the spending checks and the reservation posting; everything else is the same.
Usage: .venv/bin/python bench/billing.py [--submits 300] [--threads 16]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup_database() -> tuple | None:
    os.environ["MARKETPLACE_VAR_DIR"] = tempfile.mkdtemp()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
    os.environ.pop("DRAMATIQ_BROKER_URL", None)  # the broker is not what is measured here
    created = None
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        from tests.support.market import _fresh_postgres

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

    saved = submit.funds_reserve, submit.spending_check
    submit.funds_reserve = lambda **kwargs: None
    submit.spending_check = lambda **kwargs: None
    try:
        yield
    finally:
        submit.funds_reserve, submit.spending_check = saved


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submits", type=int, default=300)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    created = setup_database()
    try:
        from django.db import connection

        from jobs import tasks
        from tests import factories

        tasks.dispatch_job.send = lambda *a, **k: None
        factories.node(models=("echo",))
        customers = [factories.customer(f"bench-{i}", max_concurrent_jobs=10**6, rate_limit_per_minute=10**6,
                                        rate_limit_per_hour=10**7) for i in range(args.threads)]
        clients = [factories.api_client(c) for c in customers]
        for client in clients[:2]:
            client.post("/v1/jobs", {"model": "echo", "input": "warm"}, format="json")
        print(f"\nbilling benchmark on {connection.vendor}, in-process, {os.cpu_count()} cores\n")
        for threads in (1, args.threads):
            with_money = run(clients, args.submits, threads)
            with without_money():
                bare = run(clients, args.submits, threads)
            print(f"{threads:2} thread(s): {with_money:7.1f} submits/s with reservations, {bare:7.1f} without; "
                  f"money costs {bare / with_money:.2f}x")
    finally:
        if created:
            from django.db import connections

            connections.close_all()
            from tests.support.market import _drop_postgres

            _drop_postgres(*created)


if __name__ == "__main__":
    main()
