"""The slot scheduler: queued jobs to connected nodes with a free slot, several per transaction.

A pass locks the connected nodes it can (``SKIP LOCKED``: nodes another pass is
filling are left to it), then counts their busy slots, takes queued jobs in priority
order, then oldest (``SKIP LOCKED`` again), and gives each the cheapest fitting
node with a slot left, the least loaded on a tie. Two passes never give out the
same slot or the same job; a job is dispatched once per attempt. The frames go
down the nodes' sockets after commit.

A pass that finds nodes locked by another pass says so (``contended``): the other
pass may have read the queue before this pass's job arrived, so the caller runs
another pass shortly instead of leaving the job to the watchdog's sweep.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Count, F, Func, Q, Subquery
from django.utils import timezone

from jobs.dispatch.node_channel import node_send_after_commit
from jobs.live import job_row_event
from jobs.models import Job, JobAttempt, JobStatus
from jobs.services.lifecycle import job_transition
from nodes.models import Node
from nodes.selectors import node_serves, nodes_online
from privacy.relay import private_push

BATCH = 200
BUSY = (JobStatus.ASSIGNED, JobStatus.RUNNING)


@dataclass
class _Slots:
    node: Node
    busy: int

    @property
    def free(self) -> int:
        return self.node.slots - self.busy

    def order(self) -> tuple:
        # cheapest first; then the least loaded, the most reliable, the oldest
        return (int(self.node.price_per_second_wei), self.busy / self.node.slots, self.node.strikes, self.node.pk)


def _lockable(queryset):
    if connection.features.has_select_for_update_skip_locked:
        return queryset.select_for_update(skip_locked=True, of=("self",))
    return queryset  # SQLite: the write transaction already excludes every other writer


@dataclass(frozen=True)
class SchedulePass:
    assigned: int
    # another pass held some of the nodes: jobs it did not see may wait for a pass of their own
    contended: bool = False
    # it stopped at its batch: more queued jobs may fit the slots left
    full: bool = False


def _open_slots() -> tuple[list[_Slots], bool]:
    """The connected nodes this pass may fill, each with its busy slots counted, and whether
    another pass holds some of them."""
    # counted apart from the lock: the nodes online whether or not another pass holds them
    online = nodes_online().order_by().values(n=Func(F("pk"), function="COUNT"))
    nodes = list(_lockable(nodes_online().annotate(online=Subquery(online)).order_by("pk")))
    if nodes:
        contended = len(nodes) < nodes[0].online
    else:
        contended = connection.features.has_select_for_update_skip_locked and nodes_online().exists()
        return [], contended
    # busy slots are counted once the nodes are held, in a statement of its own: a count made
    # in the locking statement reads the database as it was when that statement began, and
    # misses the jobs that a pass holding a node then gave it and committed before letting go
    busy = dict(
        Job.objects.filter(node_id__in=[node.pk for node in nodes], status__in=BUSY).order_by()
        .values_list("node_id").annotate(n=Count("pk"))
    )
    slots = [_Slots(node, busy.get(node.pk, 0)) for node in nodes]
    return [s for s in slots if s.free > 0], contended


def _queued(slots: list[_Slots], limit: int):
    now = timezone.now()
    models = set()
    for s in slots:
        models.update(s.node.model_map)
    fits_somewhere = Q(model__in=models) | Q(model="")
    pinned_here = Q(pinned_node__isnull=True) | Q(pinned_node__in=[s.node.pk for s in slots])
    queued = (
        Job.objects.filter(status=JobStatus.QUEUED)
        .filter(fits_somewhere, pinned_here)
        .exclude(queue_deadline__lt=now)
        .order_by("priority_rank", "pk")
    )
    return list(_lockable(queued.select_related("customer"))[:limit])


def _fits(job: Job, node: Node) -> bool:
    if job.pinned_node_id is not None:
        return job.pinned_node_id == node.pk
    return (
        node.public_id not in job.excluded_nodes
        and node_serves(node, model=job.model, containers=job.containers)
        and node.gpu_count >= job.gpu_count
        and (not job.gpu_type or node.gpu_type == job.gpu_type)
        and (not job.min_vram_gb or node.vram_gb >= job.min_vram_gb)
    )


def job_frame(job: Job, node: Node) -> dict:
    """What goes down the node's socket: the containers and their input, or the sealed envelope."""
    frame = {"type": "job", "job_id": job.public_id, "attempt": job.attempt_count,
             "timeout_seconds": job.timeout_seconds}
    if job.is_private:
        frame["private"] = private_push(job)
    else:
        frame["containers"] = job.containers or [node.model_map[job.model]]
        frame["data"] = job.container_data
    return frame


def attempt_ref(job: Job) -> dict:
    return {"pk": job.pk, "customer": job.customer_id, "event": job_row_event(job)}


def _assign(job: Job, node: Node) -> bool:
    now = timezone.now()
    number = job.attempt_count + 1
    assigned = job_transition(
        job=job, expected=JobStatus.QUEUED, new_status=JobStatus.ASSIGNED,
        reason=f"assigned to node {node.public_id}", node=node, node_job_id="", assigned_at=now,
        attempt_count=number, deadline_at=now + timedelta(seconds=job.timeout_seconds),
    )
    if assigned:
        JobAttempt.objects.create(job=job, node=node, number=number, started_at=now)
    return assigned


def schedule(*, limit: int = BATCH) -> SchedulePass:
    """One pass of the scheduler: how many jobs it assigned, and whether it met another pass."""
    assigned = 0
    with transaction.atomic():
        slots, contended = _open_slots()
        if not slots:
            return SchedulePass(0, contended)
        for job in _queued(slots, limit):
            fitting = sorted((s for s in slots if s.free > 0 and _fits(job, s.node)), key=_Slots.order)
            if not fitting:
                continue
            chosen = fitting[0]
            if _assign(job, chosen.node):
                chosen.busy += 1
                node_send_after_commit(chosen.node.channel_name, job_frame(job, chosen.node), ref=attempt_ref(job))
                assigned += 1
            if not any(s.free > 0 for s in slots):
                break
    return SchedulePass(assigned, contended, full=assigned >= limit)
