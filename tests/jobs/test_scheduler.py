"""The slot scheduler on its own: order, fit, price, slots, and racing passes.

Nodes here are rows with an open-socket channel nobody reads; the frames the
scheduler sends down them are counted instead.
"""
import threading
from collections import Counter

import pytest
from django.db import close_old_connections, connection

from jobs.dispatch import node_channel
from jobs.dispatch.scheduler import schedule
from jobs.models import Job, JobAttempt, JobStatus
from marketplace.services import customer_get_or_create
from nodes.models import Node
from tests import factories


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
        assert schedule() == 1
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
    assert schedule() == 4
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
def test_a_node_gets_no_more_jobs_than_its_slots_and_fewer_after_failures(frames):
    node = factories.node(capacity=8)
    queue(20)
    assert schedule() == 8
    Job.objects.filter(status=JobStatus.ASSIGNED).update(status=JobStatus.COMPLETED)
    Node.objects.filter(pk=node.pk).update(strikes=2)  # it lost work it took on: a quarter of its word
    assert schedule() == 2


@pytest.mark.django_db(transaction=True)
def test_offline_nodes_and_closed_sockets_get_nothing(frames):
    factories.node(online=False)
    closed = factories.node()
    Node.objects.filter(pk=closed.pk).update(channel_name="")
    queue(2)
    assert schedule() == 0 and frames == []


@pytest.mark.django_db(transaction=True)
def test_sixteen_passes_racing_dispatch_every_job_exactly_once(frames):
    nodes = [factories.node(capacity=25) for _ in range(8)]  # 200 slots
    jobs = queue(200)
    barrier = threading.Barrier(16)
    errors = []

    def scheduler():
        try:
            barrier.wait()
            for _ in range(10):
                schedule(limit=20)
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
    assert Job.objects.filter(status=JobStatus.ASSIGNED).count() == 200
    dispatched = Counter(frame["job_id"] for _, frame in frames)
    assert set(dispatched) == {job.public_id for job in jobs} and set(dispatched.values()) == {1}
    assert JobAttempt.objects.count() == 200
    load = Counter(Job.objects.values_list("node_id", flat=True))
    assert all(load[node.pk] <= node.capacity for node in nodes)
    if connection.vendor == "postgresql":
        assert len(frames) == 200
