"""The slot scheduler: queued jobs to connected nodes with a free slot, several per transaction.

A pass locks the connected nodes it can (``SKIP LOCKED``: nodes another pass is
filling are left to it), then counts their busy slots, takes queued jobs in priority
order, then oldest (``SKIP LOCKED`` again), and gives each the cheapest fitting
node with a slot left, the least loaded on a tie. Two passes never give out the
same slot or the same job; a job is dispatched once per attempt. The frames go
down the nodes' sockets after commit.

A pass that finds nodes locked by another pass says so (``contended``): the other
pass may have read the queue before this pass's job arrived, so the caller runs
another pass shortly instead of leaving the job to the watchdog's sweep. A pass run
at a job's arrival waits for those nodes instead (it holds no other lock, and a pass
holds them for a few statements), so the job need not be handed to a worker.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from billing.selectors import pricing_policy_current
from billing.services import node_rate
from jobs.dispatch.node_channel import node_send_after_commit
from jobs.live import job_row_event
from jobs.models import ON_NODE, Job, JobAttempt, JobStatus
from jobs.services.lifecycle import job_transition
from jobs.services.money import job_run_seconds
from marketplace.constant_lookups import sql_equals, sql_in
from marketplace.rows import RowLoader, for_update, for_update_skip_locked, insert_row, marks, quoted
from nodes.models import Node
from nodes.selectors import node_serves
from privacy.relay import private_push

BATCH = 200


@dataclass
class _Slots:
    node: Node
    busy: int
    rate: int = 0  # what the node charges per GPU-second (its price within the policy's bounds)

    @property
    def free(self) -> int:
        return self.node.slots - self.busy

    def order(self) -> tuple:
        # cheapest first; then the least loaded, the most reliable, the oldest
        return (self.rate, self.busy / self.node.slots, self.node.strikes, self.node.pk)


@dataclass(frozen=True)
class SchedulePass:
    assigned: int
    # another pass held some of the nodes: jobs it did not see may wait for a pass of their own
    contended: bool = False
    # it stopped at its batch: more queued jobs may fit the slots left
    full: bool = False


# the reads of a pass are written out: the ORM's compiling of them cost several times their
# execution, once per job (marketplace.rows)
_NODE_ROW = RowLoader(Node, "n", leave_out=("hardware", "transport_keys", "last_heartbeat", "running_attempts",
                                             "gpu_stats"))
_JOB_ROW = RowLoader(Job, "j")
# nodes.selectors.nodes_online, in SQL
_ONLINE = "n.approval = %s AND n.last_heartbeat_at >= %s AND n.channel_name <> ''"


def _online_params() -> list:
    horizon = timezone.now() - timedelta(seconds=settings.NODE_OFFLINE_AFTER_SECONDS)
    return [Node.Approval.APPROVED, connection.ops.adapt_datetimefield_value(horizon)]


def _open_slots(wait: bool) -> tuple[list[_Slots], bool]:
    """The connected nodes this pass may fill, each with its busy slots counted, and whether
    another pass holds some of them (never, when it ``wait``s for them)."""
    nodes_table, jobs_table = quoted(Node._meta.db_table), quoted(Job._meta.db_table)
    # counted apart from the lock: the nodes online whether or not another pass holds them
    locks = for_update("n") if wait else for_update_skip_locked("n")
    sql = (f"SELECT {_NODE_ROW.columns}, (SELECT COUNT(*) FROM {nodes_table} n WHERE {_ONLINE}) "
           f"FROM {nodes_table} n WHERE {_ONLINE} ORDER BY n.id{locks}")
    with connection.cursor() as cursor:
        cursor.execute(sql, _online_params() * 2)
        rows = cursor.fetchall()
        if not rows:
            cursor.execute(f"SELECT 1 FROM {nodes_table} n WHERE {_ONLINE} LIMIT 1", _online_params())
            someone_holds_them = cursor.fetchone() is not None
            return [], someone_holds_them and connection.features.has_select_for_update_skip_locked
        nodes = [_NODE_ROW.build(row) for row in rows]
        contended = len(nodes) < rows[0][-1]
        # busy slots are counted once the nodes are held, in a statement of its own: a count made
        # in the locking statement reads the database as it was when that statement began, and
        # misses the jobs that a pass holding a node then gave it and committed before letting go
        cursor.execute(f"SELECT node_id, COUNT(*) FROM {jobs_table} WHERE node_id IN ({marks(nodes)}) "
                       f"AND status {sql_in(ON_NODE)} GROUP BY node_id", [node.pk for node in nodes])
        busy = dict(cursor.fetchall())
    policy = pricing_policy_current()
    slots = [_Slots(node, busy.get(node.pk, 0), node_rate(policy=policy, gpu_type=node.gpu_type,
                                                          gpu_count=node.gpu_count,
                                                          asked_wei=node.price_per_second_wei))
             for node in nodes]
    return [s for s in slots if s.free > 0], contended


def _queued(slots: list[_Slots], limit: int, after: tuple[int, int] | None) -> list[Job]:
    """Queued jobs that may fit one of these nodes, urgent first, then oldest, from ``after``
    (a job's (priority_rank, id)) on, locked for this pass."""
    models = sorted({model for s in slots for model in s.node.model_map} | {""})
    pks = [s.node.pk for s in slots]
    sql = (f"SELECT {_JOB_ROW.columns} FROM {quoted(Job._meta.db_table)} j WHERE j.status {sql_equals(JobStatus.QUEUED)} "
           f"AND j.model IN ({marks(models)}) "
           f"AND (j.pinned_node_id IS NULL OR j.pinned_node_id IN ({marks(pks)})) "
           "AND (j.queue_deadline IS NULL OR j.queue_deadline >= %s) "
           + ("AND (j.priority_rank, j.id) > (%s, %s) " if after else "")
           + f"ORDER BY j.priority_rank, j.id LIMIT %s{for_update_skip_locked('j')}")
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(sql, [*models, *pks, now, *(after or ()), limit])
        return [_JOB_ROW.build(row) for row in cursor.fetchall()]


def _queued_pages(slots: list[_Slots], limit: int):
    """The queued jobs a pass looks at, at most ``limit``, a page at a time. The first page is
    as long as the free slots, so that with a backlog a pass locks and reads only the jobs it
    is about to give out; jobs the nodes turn down (a GPU they lack, a node a job excludes)
    make the next page twice as long, so a head of such jobs never hides one that fits."""
    seen, after, page_size = 0, None, 0
    while seen < limit:
        free = sum(max(s.free, 0) for s in slots)
        page_size = min(max(free, page_size * 2), limit - seen)
        if page_size <= 0:
            return
        page = _queued(slots, page_size, after)
        yield from page
        if len(page) < page_size:
            return
        seen += len(page)
        after = (page[-1].priority_rank, page[-1].pk)


def _fits(job: Job, slot: _Slots) -> bool:
    node = slot.node
    if job.pinned_node_id is not None:
        return job.pinned_node_id == node.pk
    return (
        # its reservation covers no dearer node
        (job.rate_ceiling_wei is None or slot.rate <= int(job.rate_ceiling_wei))
        and node.public_id not in job.excluded_nodes
        and node_serves(node, model=job.model, containers=job.containers)
        and node.gpu_count >= job.gpu_count
        and (not job.gpu_type or node.gpu_type == job.gpu_type)
        and (not job.min_vram_gb or node.vram_gb >= job.min_vram_gb)
    )


def job_frame(job: Job, node: Node) -> dict:
    """What goes down the node's socket: the containers and their input, or the sealed envelope."""
    frame = {"type": "job", "job_id": job.public_id, "attempt": job.attempt_count,
             "timeout_seconds": job_run_seconds(job)}
    if job.is_private:
        frame["private"] = private_push(job)
    else:
        frame["containers"] = job.containers or [node.model_map[job.model]]
        frame["data"] = job.container_data
    return frame


def attempt_ref(job: Job) -> dict:
    return {"pk": job.pk, "customer": job.customer_id, "event": job_row_event(job)}


def _assign(job: Job, node: Node, rate: int) -> bool:
    """Give the job to the node at the node's rate now: its bill is charged at that rate, and it
    runs as long as its reservation pays for at it (its timeout, unless max_price_wei says less)."""
    now = timezone.now()
    number = job.attempt_count + 1
    job.rate_wei_per_second = rate
    assigned = job_transition(
        job=job, expected=JobStatus.QUEUED, new_status=JobStatus.ASSIGNED,
        reason=f"assigned to node {node.public_id}", node=node, node_job_id="", assigned_at=now,
        attempt_count=number, deadline_at=now + timedelta(seconds=job_run_seconds(job)), rate_wei_per_second=rate,
    )
    if assigned:
        insert_row(JobAttempt, {"job_id": job.pk, "node_id": node.pk, "number": number, "status": JobAttempt.Status.RUNNING,
                                "node_job_id": "", "error": "", "started_at": now, "ended_at": None,
                                "rate_wei_per_second": rate})
    return assigned


def _slots_sql() -> str:
    """``Node.slots`` in SQL: its capacity, halved for each recent strike, at least one."""
    greatest, least = ("GREATEST", "LEAST") if connection.vendor == "postgresql" else ("MAX", "MIN")
    return f"{greatest}(1, n.capacity >> {least}(n.strikes, 16))"


# what this process's last pass left: whether some slot it saw stayed free (a hint, read without a lock)
_last_pass_left_a_slot = True


def slots_may_be_full() -> bool:
    """Whether this process's last pass used every slot it saw (or saw none): only then is a read
    of the free slots (``free_slot_exists``) before the next pass worth its cost."""
    return not _last_pass_left_a_slot


def free_slot_exists() -> bool:
    """Whether some connected node has a slot free now: one read, no lock, so that a job that
    arrives while every slot is busy costs no pass (a pass locks the nodes and counts again).

    A slot freed after this read is not missed: whoever frees one looks for waiting jobs
    after its commit, which is after this job's, and runs a pass of its own."""
    sql = (f"SELECT 1 FROM {quoted(Node._meta.db_table)} n WHERE {_ONLINE} AND "
           f"(SELECT COUNT(*) FROM {quoted(Job._meta.db_table)} j WHERE j.node_id = n.id "
           f"AND j.status {sql_in(ON_NODE)}) < {_slots_sql()} LIMIT 1")
    with connection.cursor() as cursor:
        cursor.execute(sql, _online_params())
        return cursor.fetchone() is not None


def jobs_waiting() -> bool:
    """Whether some job waits for a slot (one indexed read): a freed slot is worth a pass only
    then. Read after the slot's transaction commits: a job that arrives later runs a pass of
    its own, which sees the slot free."""
    with connection.cursor() as cursor:  # written out: the ORM's compiling cost four times the read
        cursor.execute(f"SELECT 1 FROM {quoted(Job._meta.db_table)} WHERE status {sql_equals(JobStatus.QUEUED)} LIMIT 1")
        return cursor.fetchone() is not None


def schedule(*, limit: int = BATCH, wait: bool = False) -> SchedulePass:
    """One pass of the scheduler: how many jobs it assigned, and whether it met another pass.

    A pass that ``wait``s for the nodes another pass holds (a job's arrival: it holds no
    other lock, and a pass holds the nodes for a few statements) never meets one; a worker's
    pass skips them and says so.
    """
    global _last_pass_left_a_slot
    assigned = 0
    with transaction.atomic():
        slots, contended = _open_slots(wait)
        if not slots:
            _last_pass_left_a_slot = False
            return SchedulePass(0, contended)
        for job in _queued_pages(slots, limit):
            fitting = sorted((s for s in slots if s.free > 0 and _fits(job, s)), key=_Slots.order)
            if not fitting:
                continue
            chosen = fitting[0]
            if _assign(job, chosen.node, chosen.rate):
                chosen.busy += 1
                node_send_after_commit(chosen.node.channel_name, job_frame(job, chosen.node), ref=attempt_ref(job))
                assigned += 1
            if not any(s.free > 0 for s in slots):
                break
    _last_pass_left_a_slot = any(s.free > 0 for s in slots)
    return SchedulePass(assigned, contended, full=assigned >= limit)
