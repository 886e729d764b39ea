"""The slot scheduler on its own: order, fit, price, slots, and racing passes.

Nodes here are rows with an open-socket channel nobody reads; the frames the
scheduler sends down them are counted instead.
"""
import contextlib
import re
import threading
import time
from collections import Counter

import pytest
from django.db import close_old_connections, connection

from jobs.dispatch import node_channel
from jobs.dispatch.scheduler import schedule
from jobs.models import Job, JobAttempt, JobStatus
from marketplace.services import customer_get_or_create
from nodes.models import Node
from tests import factories
from tests.support.waiting import wait_for


@pytest.fixture
def frames(monkeypatch):
    sent = []
    lock = threading.Lock()

    def record(channel, message):
        with lock:
            sent.append((channel, message["frame"]))

    monkeypatch.setattr(node_channel, "send_to_channel", record)
    return sent


def queue(n=1, **fields):
    customer = customer_get_or_create(name="scheduler-tests")
    return [Job.objects.create(customer=customer, model=fields.pop("model", "echo"), input={"i": i}, **fields)
            for i in range(n)]


@contextlib.contextmanager
def _held_by_another_pass(node):
    """Inside: another transaction holds ``node``'s row lock, as a pass filling it does."""
    holding, release = threading.Event(), threading.Event()

    def other_pass():
        from django.db import transaction

        with transaction.atomic():
            list(Node.objects.select_for_update().filter(pk=node.pk))
            holding.set()
            release.wait(10)
        close_old_connections()

    other = threading.Thread(target=other_pass)
    other.start()
    try:
        assert holding.wait(10)
        yield
    finally:
        release.set()
        other.join(10)


def finish(job):
    Job.objects.filter(pk=job.pk).update(status=JobStatus.COMPLETED)


@pytest.mark.django_db(transaction=True)
def test_with_a_backlog_urgent_jobs_start_before_normal_ones_then_oldest_first(frames):
    factories.node(capacity=1)
    low = queue(1, priority="low")[0]
    normal = queue(2, priority="normal")
    urgent = queue(2, priority="urgent")
    high = queue(1, priority="high")[0]
    order = []
    for _ in range(6):
        assert schedule().assigned == 1
        (job,) = Job.objects.filter(status=JobStatus.ASSIGNED)
        order.append(job.pk)
        finish(job)
    assert order == [urgent[0].pk, urgent[1].pk, high.pk, normal[0].pk, normal[1].pk, low.pk]
    assert len(frames) == 6


@pytest.mark.django_db(transaction=True)
def test_the_cheapest_fitting_node_wins_and_the_least_loaded_on_a_tie(frames):
    dear = factories.node(price_per_second_wei=50)
    cheap_a = factories.node(price_per_second_wei=10, capacity=2)
    cheap_b = factories.node(price_per_second_wei=10, capacity=2)
    factories.node(models=("other",), price_per_second_wei=1)  # cheapest, but does not serve echo
    queue(4)
    assert schedule().assigned == 4
    per_node = Counter(Job.objects.values_list("node_id", flat=True))
    assert per_node == {cheap_a.pk: 2, cheap_b.pk: 2}, "the dear node waits until the cheap ones are full"
    queue(1)
    schedule()
    assert Job.objects.filter(node=dear).count() == 1


@pytest.mark.django_db(transaction=True)
def test_requirements_and_exclusions_are_honoured_and_a_job_no_slot_fits_stays_queued(frames):
    t4 = factories.node(gpu_type="t4", gpu_count=1, vram_gb=16)
    h100 = factories.node(gpu_type="h100", gpu_count=2, vram_gb=80)
    (wants_h100,) = queue(1, gpu_type="h100", gpu_count=1)
    (wants_vram,) = queue(1, min_vram_gb=40)
    (excluded,) = queue(1, excluded_nodes=[t4.public_id, h100.public_id])
    (wants_8,) = queue(1, gpu_count=8)
    schedule()
    assert Job.objects.get(pk=wants_h100.pk).node_id == h100.pk
    assert Job.objects.get(pk=wants_vram.pk).node_id == h100.pk
    assert Job.objects.get(pk=excluded.pk).status == JobStatus.QUEUED
    assert Job.objects.get(pk=wants_8.pk).status == JobStatus.QUEUED


@pytest.mark.django_db(transaction=True)
def test_a_head_of_jobs_the_node_turns_down_does_not_hide_one_that_fits_behind_it(frames):
    node = factories.node(gpu_type="t4", capacity=1)
    turned_down = queue(5, gpu_type="h100") + queue(2, excluded_nodes=[node.public_id])
    (fits,) = queue(1)
    assert schedule().assigned == 1
    assert Job.objects.get(pk=fits.pk).node_id == node.pk
    assert not Job.objects.filter(pk__in=[j.pk for j in turned_down]).exclude(status=JobStatus.QUEUED).exists()


@pytest.mark.django_db(transaction=True)
def test_with_a_backlog_a_pass_reads_only_as_many_jobs_as_slots_are_free(frames):
    from django.test.utils import CaptureQueriesContext

    factories.node(capacity=1)
    queue(30)
    with CaptureQueriesContext(connection) as queries:
        assert schedule().assigned == 1
    (read,) = [q["sql"] for q in queries.captured_queries if 'FROM "jobs_job" j' in q["sql"]]
    assert re.search(r"LIMIT 1\b", read), read
    assert Job.objects.filter(status=JobStatus.QUEUED).count() == 29


@pytest.mark.django_db(transaction=True)
def test_a_node_gets_no_more_jobs_than_its_slots_and_fewer_after_failures(frames):
    node = factories.node(capacity=8)
    queue(20)
    assert schedule().assigned == 8
    Job.objects.filter(status=JobStatus.ASSIGNED).update(status=JobStatus.COMPLETED)
    Node.objects.filter(pk=node.pk).update(strikes=2)  # it lost work it took on: a quarter of its word
    assert schedule().assigned == 2


@pytest.mark.django_db(transaction=True)
def test_offline_nodes_and_closed_sockets_get_nothing(frames):
    factories.node(online=False)
    closed = factories.node()
    Node.objects.filter(pk=closed.pk).update(channel_name="")
    queue(2)
    assert schedule().assigned == 0 and frames == []


@pytest.mark.django_db(transaction=True)
def test_sixteen_passes_racing_dispatch_every_job_exactly_once_and_fill_no_node_past_its_slots(frames):
    nodes = [factories.node(capacity=25) for _ in range(8)]  # 200 slots
    jobs = queue(300)  # more than fit: a pass that miscounts a node's busy slots overfills it
    barrier = threading.Barrier(16)
    errors = []

    def scheduler():
        try:
            barrier.wait()
            # as the actor does: another pass when this one met others or filled its batch
            for _ in range(200):
                done = schedule(limit=20)
                if not (done.contended or done.full):
                    break
        except Exception as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=scheduler) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    load = Counter(Job.objects.filter(status=JobStatus.ASSIGNED).values_list("node_id", flat=True))
    assert {node.pk: load[node.pk] for node in nodes} == {node.pk: node.capacity for node in nodes}
    dispatched = Counter(frame["job_id"] for _, frame in frames)
    assert set(dispatched) <= {job.public_id for job in jobs} and set(dispatched.values()) == {1}
    assert JobAttempt.objects.count() == 200 == len(frames)


@pytest.mark.django_db(transaction=True)
def test_a_pass_that_meets_another_asks_for_one_more_pass_after_it(frames, monkeypatch):
    """A pass holding the nodes may have read the queue before this job came: the job gets a
    pass of its own a moment later, not the watchdog's sweep seconds later."""
    if not connection.features.has_select_for_update_skip_locked:
        pytest.skip("SQLite runs one writer at a time: passes never meet")
    from jobs import tasks

    node = factories.node(capacity=4)
    (job,) = queue(1)
    later = []
    monkeypatch.setattr(tasks.dispatch_job, "send_with_options", lambda **options: later.append(options))
    tasks.cache_delete_many([tasks.AGAIN_KEY])
    with _held_by_another_pass(node):
        assert schedule() == schedule().__class__(0, contended=True)
        tasks.dispatch_job.fn(job.pk)
        tasks.dispatch_job.fn(job.pk)  # a second pass that meets it does not ask again
    assert later == [{"kwargs": {"again": True}, "delay": tasks.AGAIN_AFTER_MS}]
    tasks.dispatch_job.fn(**later[0]["kwargs"])
    assert Job.objects.get(pk=job.pk).node_id == node.pk and len(frames) == 1


@pytest.mark.django_db(transaction=True)
def test_a_pass_that_fills_its_batch_asks_for_the_next_one(frames, monkeypatch):
    from jobs import tasks

    factories.node(capacity=10)
    queue(5)
    sent = []
    monkeypatch.setattr(tasks.dispatch_job, "send", lambda *args: sent.append(args))
    monkeypatch.setattr(tasks, "schedule", lambda: schedule(limit=2))
    tasks.dispatch_job.fn()
    assert sent == [()] and Job.objects.filter(status=JobStatus.ASSIGNED).count() == 2
    assert schedule(limit=3) == schedule().__class__(3, full=True)


@pytest.mark.django_db(transaction=True)
def test_arrivals_while_a_pass_is_pending_share_its_message_and_it_serves_them_all(frames, monkeypatch):
    from jobs import tasks

    node = factories.node(capacity=10)
    sent = []
    monkeypatch.setattr(tasks.dispatch_job, "send", lambda *args: sent.append(args))
    queue(1)
    tasks.schedule_soon()
    queue(3)
    for _ in range(3):
        tasks.schedule_soon()  # the pass asked for has not begun: no more messages
    assert sent == [()]
    tasks.dispatch_job.fn()  # the worker takes the message: one pass, every job committed before it
    assert Job.objects.filter(node=node, status=JobStatus.ASSIGNED).count() == 4 and len(frames) == 4
    queue(1)
    tasks.schedule_soon()  # that pass has begun: a new arrival asks for a pass of its own
    assert sent == [(), ()]
    tasks.dispatch_job.fn()
    assert Job.objects.filter(node=node, status=JobStatus.ASSIGNED).count() == 5


@pytest.mark.django_db(transaction=True)
def test_a_lost_request_holds_later_ones_back_only_briefly_and_the_sweep_passes_meanwhile(frames, monkeypatch):
    from jobs import tasks
    from jobs.dispatch.watchdog import jobs_watch

    factories.node(capacity=10)
    sent = []
    monkeypatch.setattr(tasks.dispatch_job, "send", lambda *args: sent.append(args))
    monkeypatch.setattr(tasks, "PENDING_HOLD_SECONDS", 1)
    tasks.schedule_soon()  # its message is lost: no worker ever takes it
    (job,) = queue(1)
    tasks.schedule_soon()
    assert sent == [()]
    jobs_watch()
    assert Job.objects.get(pk=job.pk).status == JobStatus.ASSIGNED
    time.sleep(1.2)
    tasks.schedule_soon()
    assert sent == [(), ()]


@pytest.fixture
def passes_at_arrival(monkeypatch, sent_dispatches):
    """A job's arrival runs its pass in the request, as in production (the suite's default asks
    a worker instead)."""
    from jobs import tasks
    from jobs.services import submit

    monkeypatch.setattr(submit, "schedule_here", tasks.schedule_here)
    return sent_dispatches


def _submit(api):
    response = api.post("/v1/jobs", {"model": "echo", "input": "hi"}, format="json")
    assert response.status_code == 201, response.content
    return Job.objects.get(public_id=response.json()["job_id"])


@pytest.mark.django_db(transaction=True)
def test_a_job_a_free_slot_fits_is_on_its_node_when_the_submit_answers_with_no_worker_asked(
        frames, passes_at_arrival, monkeypatch):
    from marketplace import live_bus

    published = []
    monkeypatch.setattr(live_bus, "publish", lambda topic, message: published.append(message))
    node = factories.node(capacity=1)
    api = factories.api_client(factories.customer("arrivals"))
    job = _submit(api)
    assert (job.status, job.node_id) == (JobStatus.ASSIGNED, node.pk)
    # the dashboard hears the job queued, then assigned: never the older state last
    rows = [m["status"] for m in published if m.get("job_id") == job.public_id and "status" in m]
    assert rows and rows[-1] == JobStatus.ASSIGNED and rows[0] == JobStatus.QUEUED, rows
    assert [frame["job_id"] for _, frame in frames] == [job.public_id]
    assert passes_at_arrival == [], "no broker message for a job placed at once"
    # the node is full now: the next job waits. No worker is asked: the pass that found no slot
    # ran after the job was committed, so whatever frees a slot later finds the job waiting
    waiting = _submit(api)
    assert waiting.status == JobStatus.QUEUED and passes_at_arrival == []


@pytest.mark.django_db(transaction=True)
def test_a_pass_at_arrival_that_fails_leaves_the_job_queued_for_a_worker_and_the_submit_answers(
        frames, passes_at_arrival, monkeypatch, caplog):
    from jobs import tasks

    factories.node(capacity=1)

    def broken(**options):
        raise RuntimeError("the database went away mid-pass")

    monkeypatch.setattr(tasks, "schedule", broken)
    job = _submit(factories.api_client(factories.customer("arrivals")))
    assert job.status == JobStatus.QUEUED and passes_at_arrival == [()]
    assert "a worker's pass takes over" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_a_pass_at_arrival_waits_for_a_pass_holding_the_nodes_then_places_its_job(frames, passes_at_arrival):
    if not connection.features.has_select_for_update_skip_locked:
        pytest.skip("SQLite runs one writer at a time: passes never meet")
    node = factories.node(capacity=4)
    api = factories.api_client(factories.customer("arrivals"))
    submitted = []

    def arrival():
        submitted.append(_submit(api))
        close_old_connections()

    def arrival_waits() -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                           "AND query LIKE %s", ["%FOR UPDATE OF n%"])
            return cursor.fetchone()[0] == 1

    submitter = threading.Thread(target=arrival)
    try:
        with _held_by_another_pass(node):
            submitter.start()
            wait_for(arrival_waits, timeout=10, message="the arrival's pass never waited for the nodes")
            assert Job.objects.get().status == JobStatus.QUEUED
    finally:
        submitter.join(10)
    job = Job.objects.get(pk=submitted[0].pk)
    assert (job.status, job.node_id) == (JobStatus.ASSIGNED, node.pk) and len(frames) == 1
    assert passes_at_arrival == [], "the job waited for the nodes, not for a worker"


@pytest.mark.django_db(transaction=True)
def test_with_the_broker_down_a_submit_whose_pass_fails_still_answers_201_and_the_sweep_places_it(
        frames, monkeypatch):
    from dramatiq.errors import ConnectionError as BrokerDown

    from jobs import tasks
    from jobs.dispatch.watchdog import jobs_watch
    from tests import factories as f

    node = factories.node(capacity=4)
    tries = []

    def down(*args, **kwargs):
        tries.append(args)
        raise BrokerDown("the broker is down")

    monkeypatch.setattr(tasks.dispatch_job, "send", down)
    api = f.api_client(f.customer("carol"))  # its arrival asks a worker (the tests' default): the broker
    response = api.post("/v1/jobs", {"model": "echo", "input": "x"}, format="json")
    assert response.status_code == 201, response.content
    tasks.schedule_soon()
    assert len(tries) == 2, "each request tried the broker: a failed send holds nothing back"
    jobs_watch()
    assert Job.objects.get(public_id=response.json()["job_id"]).node_id == node.pk


@pytest.mark.django_db(transaction=True)
def test_a_job_that_arrives_while_every_slot_is_busy_costs_one_read_and_no_pass(frames, monkeypatch):
    """Once a pass has used every slot it saw, the next arrival reads whether a slot is free
    before it locks anything; while slots are left, it goes straight to the pass."""
    from django.test.utils import CaptureQueriesContext

    from jobs.dispatch.scheduler import free_slot_exists
    from jobs.tasks import schedule_here

    from jobs.dispatch import scheduler

    monkeypatch.setattr(scheduler, "_last_pass_left_a_slot", True)  # as in a process whose passes left slots
    node = factories.node(capacity=8)
    factories.node(capacity=2, online=False)  # free, but gone: no slot
    queue(1)
    with CaptureQueriesContext(connection) as queries:
        schedule_here()  # slots were left at the last pass: straight to the pass, no read first
    assert Job.objects.filter(status=JobStatus.ASSIGNED).count() == 1
    assert not [q for q in queries.captured_queries if "j.node_id = n.id" in q["sql"]]
    queue(19)
    assert schedule().assigned == 7
    assert not free_slot_exists()
    with CaptureQueriesContext(connection) as queries:
        schedule_here()  # the arrival of a ninth job: no pass, no lock taken
    assert len(queries.captured_queries) == 1 and "FOR UPDATE" not in queries.captured_queries[0]["sql"]
    assert Job.objects.filter(status=JobStatus.ASSIGNED).count() == 8
    # a slot frees: the next arrival's pass fills it
    Job.objects.filter(pk=Job.objects.filter(status=JobStatus.ASSIGNED).first().pk).update(status=JobStatus.COMPLETED)
    assert free_slot_exists()
    schedule_here()
    assert Job.objects.filter(status=JobStatus.ASSIGNED, node=node).count() == 8
    # strikes count as the scheduler counts them: capacity 8 with two strikes is two slots
    Job.objects.filter(status=JobStatus.ASSIGNED).update(status=JobStatus.COMPLETED)
    Node.objects.filter(pk=node.pk).update(strikes=2)
    assert schedule().assigned == 2 and not free_slot_exists()
    Node.objects.filter(pk=node.pk).update(strikes=40)  # never fewer than one slot
    Job.objects.filter(status=JobStatus.ASSIGNED).update(status=JobStatus.COMPLETED)
    assert free_slot_exists() and schedule().assigned == 1 and not free_slot_exists()
