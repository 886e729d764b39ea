"""Reads on nodes: which nodes can take a job, and why none can."""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from marketplace.rows import RowLoader, quoted
from nodes.models import Node


def nodes_online() -> QuerySet[Node]:
    """Approved nodes whose socket is open and whose heartbeat is fresh: the ones jobs can go to."""
    horizon = timezone.now() - timedelta(seconds=settings.NODE_OFFLINE_AFTER_SECONDS)
    return Node.objects.filter(approval=Node.Approval.APPROVED, last_heartbeat_at__gte=horizon).exclude(channel_name="")


def node_serves(node: Node, *, model: str, containers: list[str]) -> bool:
    return _serves(node, model, containers)


def _serves(node: Node, model: str, containers: list[str]) -> bool:
    if containers:
        return all(c in node.containers for c in containers)
    # a model the node said it cannot run now (its hello: not installed, say) is not served
    return model in node.model_map and model not in node.unavailable_models


def model_is_known(*, model: str = "", containers: list[str] | None = None) -> bool:
    """Some approved node (online or not) serves it: the catalogue a customer can ask for."""
    approved = Node.objects.filter(approval=Node.Approval.APPROVED)
    if containers:
        return any(_serves(node, "", containers) for node in approved.only("containers"))
    return approved.filter(model_map__has_key=model).exclude(unavailable_models__has_key=model).exists()


# the columns node_offers_fitting reads (it runs on every submit: written out, see marketplace.rows)
_OFFER_ROW = RowLoader(Node, "n", leave_out=tuple(
    f.name for f in Node._meta.concrete_fields
    if f.name not in ("id", "gpu_type", "gpu_count", "price_per_second_wei", "containers", "model_map",
                      "unavailable_models")))


def node_offers_fitting(*, model: str, containers: list[str], gpu_type: str, gpu_count: int,
                        min_vram_gb: float) -> list[tuple[str, int, int]]:
    """(gpu_type, gpu_count, asked price) of every approved node, online or not, that serves the
    job and meets its hardware: the nodes its quote and reservation must answer for."""
    conditions, params = ["n.approval = %s", "n.gpu_count >= %s"], [Node.Approval.APPROVED, gpu_count]
    if gpu_type:
        conditions.append("n.gpu_type = %s")
        params.append(gpu_type)
    if min_vram_gb:
        conditions.append("n.vram_gb >= %s")
        params.append(min_vram_gb)
    if not containers:
        # the model's nodes in SQL; a chain's containers are checked in Python (_serves)
        conditions.append(f"{_has_key('n.model_map')} AND NOT {_has_key('n.unavailable_models')}")
        params += [model, model]
    sql = f"SELECT {_OFFER_ROW.columns} FROM {quoted(Node._meta.db_table)} n WHERE {' AND '.join(conditions)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        nodes = [_OFFER_ROW.build(row) for row in cursor.fetchall()]
    return [(node.gpu_type, node.gpu_count, int(node.price_per_second_wei))
            for node in nodes if _serves(node, model, containers)]


def _has_key(column: str) -> str:
    """SQL: the JSON object in ``column`` has the key given as the next parameter."""
    if connection.vendor == "postgresql":
        return f"({column} ? %s)"
    # the keys themselves, not a JSON path: a path cannot name a key with a double quote in it
    return f"EXISTS (SELECT 1 FROM json_each({column}) WHERE json_each.key = %s)"


def _meeting(queryset: QuerySet[Node], *, model: str, containers: list[str], gpu_type: str, gpu_count: int,
             min_vram_gb: float) -> QuerySet[Node]:
    """The nodes of ``queryset`` with the job's hardware, and its model when it names one (a
    chain's containers are checked in Python: ``_serves``)."""
    queryset = queryset.filter(gpu_count__gte=gpu_count)
    if gpu_type:
        queryset = queryset.filter(gpu_type=gpu_type)
    if min_vram_gb:
        queryset = queryset.filter(vram_gb__gte=min_vram_gb)
    if not containers:
        queryset = queryset.filter(model_map__has_key=model).exclude(unavailable_models__has_key=model)
    return queryset


def node_candidates(*, model: str, containers: list[str], gpu_type: str, gpu_count: int, min_vram_gb: float,
                    exclude: list[str]) -> list[Node]:
    """Online approved nodes that serve the job and meet its hardware, least loaded first."""
    queryset = _meeting(nodes_online().exclude(public_id__in=exclude), model=model, containers=containers,
                        gpu_type=gpu_type, gpu_count=gpu_count, min_vram_gb=min_vram_gb)
    queryset = queryset.annotate(active=Count("attempts", filter=Q(attempts__status="running")))
    nodes = [n for n in queryset if _serves(n, model, containers)]
    return sorted(nodes, key=lambda n: (n.active / max(n.capacity, 1), n.pk))


def no_candidate_reason(*, model: str, containers: list[str], gpu_type: str, gpu_count: int, min_vram_gb: float,
                        exclude: list[str]) -> str:
    """Why no node can take the job, in words a customer can act on."""
    online = list(nodes_online().exclude(public_id__in=exclude))
    what = f"model {model}" if not containers else f"containers {', '.join(containers)}"
    if not online:
        return "no node is online" + (" (other than the ones that already failed this job)" if exclude else "")
    serving = [n for n in online if _serves(n, model, containers)]
    if not serving:
        return f"no online node serves {what}"
    if gpu_type and not any(n.gpu_type == gpu_type for n in serving):
        return f"no online node offers gpu_type {gpu_type}"
    if not any(n.gpu_count >= gpu_count for n in serving):
        return f"no online node has {gpu_count} GPUs"
    if min_vram_gb and not any(n.vram_gb >= min_vram_gb for n in serving):
        return f"no online node has {min_vram_gb:g} GB of VRAM per GPU"
    return "every node that can run this job is busy; it waits for a free slot"


def _online_serving(model: str) -> QuerySet[Node]:
    return nodes_online().filter(model_map__has_key=model).exclude(unavailable_models__has_key=model)


def node_capacity_for(*, model: str) -> int:
    return sum(n.capacity for n in _online_serving(model)) if model else 0


def model_runs_online(*, model: str) -> bool:
    """Some online node runs the model now (one indexed read; the catalogue prices them all)."""
    return bool(model) and _online_serving(model).exists()


def miner_nodes_overview(*, miner) -> list[dict]:
    """The miner's nodes as their dashboard shows them: state, hardware, load, record."""
    nodes = (
        Node.objects.filter(miner=miner)
        .annotate(
            running=Count("attempts", filter=Q(attempts__status="running")),
            served=Count("attempts", filter=Q(attempts__status="succeeded")),
            # the node's own failures only: an attempt lost (a crash, silence, a bad receipt); a
            # container failing on a customer's input, a timeout or a cancel is not held against it
            failed=Count("attempts", filter=Q(attempts__status="lost")),
        )
        .order_by("pk")
    )
    overview = []
    for node in nodes:
        ended = node.served + node.failed
        overview.append({
            "node": node,
            "online": node.is_online,
            "load": f"{node.running}/{node.capacity}",
            "served": node.served,
            "failure_rate": (node.failed / ended) if ended else None,
        })
    return overview


def containers_offered() -> dict[str, list[Node]]:
    """Container id → the approved online nodes that run it (what the Infernet gateway offers)."""
    offered: dict[str, list[Node]] = {}
    for node in nodes_online().order_by("pk"):
        for container in node.containers:
            offered.setdefault(container, []).append(node)
    return offered
