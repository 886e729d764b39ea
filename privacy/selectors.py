"""Reads for private inference: the nodes a customer can seal to, and their jobs."""
from __future__ import annotations

from billing.selectors import pricing_policy_current
from billing.services import node_rate, quote_job
from jobs.models import DEFAULT_TIMEOUT_SECONDS, Job
from jobs.selectors import model_median_seconds
from marketplace.models import Customer
from nodes.models import Node
from nodes.selectors import nodes_online
from privacy.exceptions import PrivateJobNotFound
from wire.keys import transport_key_usable


def private_gpu(node: Node) -> tuple[str, int]:
    """What a private job is priced at: one of the node's GPUs (or its CPU when it has none)."""
    return (node.gpu_type, 1) if node.gpu_count else ("", 0)


def private_quote(*, node: Node, model_id: str, policy=None):
    policy = policy or pricing_policy_current()
    gpu_type, gpu_count = private_gpu(node)
    expected = model_median_seconds(model=model_id, default=policy.default_expected_seconds)
    rate = node_rate(policy=policy, gpu_type=node.gpu_type, gpu_count=node.gpu_count,
                     asked_wei=node.price_per_second_wei)
    return quote_job(model=model_id, gpu_type=gpu_type, gpu_count=gpu_count, priority="normal",
                     expected_seconds=expected, timeout_seconds=DEFAULT_TIMEOUT_SECONDS, policy=policy,
                     rates=(rate, rate))


def _model_offer(node: Node, model: str, policy) -> dict:
    """The expected price, and the most the job can cost (a whole default timeout): a
    ``max_price_wei`` of the quote stops a job that runs longer than the model's median."""
    quote = private_quote(node=node, model_id=model, policy=policy)
    return {"model_id": model, "quoted_price_wei": str(quote.price_wei), "worst_case_price_wei": str(quote.worst_case_wei)}


def private_nodes() -> list[dict]:
    """Online approved nodes with a usable transport key: their models, quotes and signed keys."""
    policy = pricing_policy_current()
    listing = []
    for node in nodes_online().order_by("pk"):
        keys = [k for k in node.transport_keys if transport_key_usable(k)]
        if not keys:
            continue
        listing.append(
            {
                "node_id": node.public_id,
                "identity_public_key": node.identity_public_key,
                "models": [_model_offer(node, model, policy) for model in sorted(node.model_map)],
                "gpu_type": node.gpu_type,
                "gpu_count": node.gpu_count,
                "vram_gb": node.vram_gb,
                # what it charges: its miner's price within the policy's bounds
                "price_per_second_wei": str(node_rate(policy=policy, gpu_type=node.gpu_type, gpu_count=node.gpu_count,
                                                      asked_wei=node.price_per_second_wei)),
                "policy_version": str(policy.version),
                "transport_keys": keys,
            }
        )
    return listing


def private_job_get(*, customer: Customer, job_id: str) -> Job:
    job = (
        Job.objects.select_related("customer", "pinned_node")
        .filter(public_id=job_id, customer=customer, is_private=True)
        .first()
    )
    if job is None:
        raise PrivateJobNotFound(f"no private job {job_id}")
    return job
