"""The job path reads only the jobs in flight, however long the history grows (PostgreSQL).

A statement a connection runs often is prepared, and PostgreSQL then plans it once for any
value of its parameters. A read of "the queued jobs" planned that way does not know that
queued jobs are a handful beside thousands of finished ones, and scanned them all: with
100,000 finished jobs each result cost 12 ms of database time (``bench/dispatch.py
--history``). Each statement of the job path's reads is run here the way a prepared
statement is, with its plan forced generic, over a history of finished jobs, and the rows it
reads are counted from EXPLAIN ANALYZE.
"""
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from jobs.dispatch.scheduler import jobs_waiting, schedule
from jobs.dispatch.watchdog import jobs_watch
from jobs.models import BillingStatus, Job, JobStatus
from jobs.selectors import model_median_seconds, queue_depth
from jobs.services.money import job_bills_close_ended
from tests import factories

HISTORY = 3000
# the jobs in flight, and the 50 recent completions a model's median is taken over
MOST_ROWS_READ = 60

pytestmark = pytest.mark.django_db


def _pg_type(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint"
    if isinstance(value, Decimal):
        return "numeric"
    if hasattr(value, "tzinfo"):
        return "timestamptz"
    return "text"


def _rows_read(sql: str, params) -> int:
    """Rows of jobs_job the statement reads when planned for any parameter (a generic plan)."""
    from psycopg import sql as pgsql

    params = list(params or ())
    numbers = iter(range(1, len(params) + 1))
    text = re.sub(r"%s", lambda _: f"${next(numbers)}", sql)
    types = ", ".join(_pg_type(p) for p in params)
    raw = connection.connection
    arguments = ", ".join(pgsql.Literal(p).as_string(raw) for p in params)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute(f"PREPARE history_probe{f' ({types})' if types else ''} AS {text}")
        try:
            cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE history_probe"
                           f"{f' ({arguments})' if arguments else ''}")
            plan = cursor.fetchone()[0]
        finally:
            cursor.execute("DEALLOCATE history_probe")
    if isinstance(plan, str):
        import json

        plan = json.loads(plan)
    return _rows_of(plan[0]["Plan"])


def _rows_of(node: dict) -> int:
    rows = 0
    if node.get("Relation Name") == "jobs_job":
        seen = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0) + \
            node.get("Rows Removed by Index Recheck", 0)
        rows += seen * node.get("Actual Loops", 1)
    return rows + sum(_rows_of(child) for child in node.get("Plans", []))


@pytest.fixture
def history():
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements' generic plans are PostgreSQL's")
    customer = factories.customer()
    node = factories.node(models=("echo",), capacity=2)
    now = timezone.now()
    finished = dict(customer=customer, model="echo", input="ping", node=node, billing_status=BillingStatus.SETTLED,
                    started_at=now - timedelta(seconds=2), completed_at=now - timedelta(seconds=1))
    Job.objects.bulk_create([Job(status=JobStatus.COMPLETED, **finished) for _ in range(HISTORY)], batch_size=1000)
    # the jobs in flight come last, as they do: a scan in id order meets them at its end
    Job.objects.create(customer=customer, model="echo", input="queued", billing_status=BillingStatus.RESERVED)
    Job.objects.create(customer=customer, model="echo", input="expired", billing_status=BillingStatus.RESERVED,
                       queue_deadline=now - timedelta(minutes=1))
    Job.objects.create(customer=customer, model="other", input="no node", billing_status=BillingStatus.RESERVED)
    for status in (JobStatus.ASSIGNED, JobStatus.RUNNING, JobStatus.RUNNING):
        Job.objects.create(customer=customer, model="echo", input=status, node=node, status=status,
                           billing_status=BillingStatus.RESERVED, assigned_at=now, deadline_at=now + timedelta(hours=1))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")
    return customer


def _job_reads(work) -> list[tuple[str, list]]:
    seen = []

    def record(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith("SELECT") and '"jobs_job"' in sql:
            seen.append((sql, list(params or ())))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        work()
    return seen


def test_the_job_paths_reads_touch_the_jobs_in_flight_not_the_history(history):
    def job_path():
        jobs_waiting()
        queue_depth(model="echo")
        model_median_seconds(model="echo", default=5)
        schedule()
        job_bills_close_ended(customer=history)
        jobs_watch()

    reads = _job_reads(job_path)
    assert len(reads) >= 10, reads  # every rule of the sweep, the scheduler's, the outlook's
    scans = {sql[:200]: rows for sql, params in reads if (rows := _rows_read(sql, params)) > MOST_ROWS_READ}
    assert scans == {}, f"reads that scan the history of {HISTORY} jobs: {scans}"


def test_the_probe_sees_a_scan_of_the_history(history):
    """The check above can fail: a read by a status given as a parameter scans the history."""
    sql = 'SELECT 1 AS "a" FROM "jobs_job" WHERE "jobs_job"."status" = %s LIMIT 1'
    assert _rows_read(sql, [JobStatus.QUEUED]) > HISTORY / 2
