"""The catalogue: every model an online node can run now, as a customer chooses among them.

Each entry says what the model does, gives an input to try it with, and prices it the
way a submit would: the cheapest online node's rate per second, and the quote for a
typical run (its recent median, or the policy's default before it has one).
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass

from billing.selectors import pricing_policy_current
from billing.services import node_rate, quote_job
from jobs.selectors import model_outlook
from nodes.selectors import nodes_online

# what the agent's built-in models do and an input that shows it; the order is the order they
# are offered in (the first is the one a new customer's form starts on)
KNOWN = {
    "tokens": ("Streams the words of its input back, one at a time: a stand-in for a language model.",
               {"text": "GPUs on this marketplace answer in a stream of words", "delay": 0.2}),
    "echo": ("Answers with its input, unchanged: the quickest way to try the API.", {"text": "hello"}),
    "sleep": ("Waits the seconds it is given and reports its progress: for trying progress and cancel.",
              {"seconds": 5}),
    "all-MiniLM-L6-v2": ("Turns text into a 384-number sentence embedding, for search and clustering.",
                         {"text": "a sentence to embed"}),
}
UNKNOWN_EXAMPLE = {"text": "hello"}
TYPICAL_TIMEOUT_SECONDS = 3600


@dataclass(frozen=True)
class CatalogueEntry:
    model: str
    description: str
    example: object
    nodes_online: int
    rate_wei_per_second: int  # the cheapest online node's
    typical_price_wei: int
    median_seconds: int | None  # None: no completed job to take it from yet

    @property
    def example_text(self) -> str:
        return self.example if isinstance(self.example, str) else json.dumps(self.example)


def _order(model: str) -> tuple[int, str]:
    known = list(KNOWN)
    return (known.index(model) if model in known else len(known), model)


def catalogue() -> list[CatalogueEntry]:
    nodes_by_model = defaultdict(list)
    for node in nodes_online().only("model_map", "unavailable_models", "gpu_type", "gpu_count", "price_per_second_wei"):
        for model in node.model_map:
            if model not in node.unavailable_models:  # the node said it cannot run it now
                nodes_by_model[model].append(node)
    policy = pricing_policy_current()
    entries = []
    for model in sorted(nodes_by_model, key=_order):
        nodes = nodes_by_model[model]
        rates = [node_rate(policy=policy, gpu_type=n.gpu_type, gpu_count=n.gpu_count,
                           asked_wei=int(n.price_per_second_wei)) for n in nodes]
        median = model_outlook(model=model).median_seconds
        typical = quote_job(model=model, gpu_type="", gpu_count=0, priority="normal",
                            expected_seconds=median or policy.default_expected_seconds,
                            timeout_seconds=TYPICAL_TIMEOUT_SECONDS, policy=policy, rates=(min(rates), max(rates)))
        description, example = KNOWN.get(model, (f"Served by {len(nodes)} node(s) on this marketplace.",
                                                 UNKNOWN_EXAMPLE))
        entries.append(CatalogueEntry(model=model, description=description, example=example, nodes_online=len(nodes),
                                      rate_wei_per_second=min(rates), typical_price_wei=typical.price_wei,
                                      median_seconds=median))
    return entries
