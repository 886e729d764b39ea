"""marketplace.rows: hand-written SQL that must write and read exactly what the ORM would."""
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs.models import Job, JobEvent, JobStatus
from marketplace.rows import RowLoader, insert_instance, quoted
from tests import factories


def _fields(job: Job) -> dict:
    return {f.attname: getattr(job, f.attname) for f in Job._meta.concrete_fields}


@pytest.mark.django_db
def test_an_inserted_instance_reads_back_as_the_orm_wrote_it_with_its_key_and_generated_columns():
    customer = factories.customer("rows")
    now = timezone.now()
    job = Job(customer=customer, model="echo", containers=["a", "b"], input={"text": "é", "n": [1, 2]},
              output_config={"format": "json"}, priority="urgent", min_vram_gb=7.5, reserved_price_wei=10**30,
              queue_deadline=now + timedelta(minutes=5), created_at=now, excluded_nodes=["node_x"])
    with CaptureQueriesContext(connection) as queries:
        insert_instance(job, JobEvent, {"old_status": "", "new_status": JobStatus.QUEUED, "reason": "submitted",
                                        "created_at": now}, link="job")
    assert job.pk and job.priority_rank == 0 and not job._state.adding
    assert _fields(Job.objects.get(pk=job.pk)) == _fields(job)
    (event,) = JobEvent.objects.filter(job=job)
    assert (event.new_status, event.reason, event.created_at) == (JobStatus.QUEUED, "submitted", now)
    # one round trip where a data-modifying WITH exists
    assert len(queries) == (1 if connection.vendor == "postgresql" else 2)


@pytest.mark.django_db
def test_a_row_loader_builds_the_same_instance_as_the_orm():
    customer = factories.customer("rows")
    job = Job.objects.create(customer=customer, model="echo", input=[1, {"a": None}], reserved_price_wei=5,
                             queue_deadline=timezone.now())
    loader = RowLoader(Job, "j")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {loader.columns} FROM {quoted(Job._meta.db_table)} j WHERE j.id = %s", [job.pk])
        built = loader.build(cursor.fetchone())
    assert _fields(built) == _fields(Job.objects.get(pk=job.pk))


@pytest.mark.django_db
def test_on_postgresql_a_statement_run_again_is_prepared_once_with_its_parameters_apart():
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    factories.customer("rows")
    with connection.cursor() as cursor:
        for _ in range(6):
            cursor.execute("SELECT count(*) FROM marketplace_customer WHERE name = %s", ["rows"])
            assert cursor.fetchone() == (1,)
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert "SELECT count(*) FROM marketplace_customer WHERE name = $1" in prepared
