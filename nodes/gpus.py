"""One spelling of a GPU type for matching: "NVIDIA H100 80GB HBM3" and "h100" are both "h100"."""
from __future__ import annotations

import re

_NOISE = re.compile(r"\b(nvidia|geforce|tesla|quadro|amd|radeon|instinct)\b")
_MODEL = re.compile(r"\b(rtx|gtx)?\s*-?\s*([a-z]{0,3}\d{2,4}[a-z]?)\b")


def gpu_type_normalize(name: str) -> str:
    text = _NOISE.sub(" ", name.lower())
    match = _MODEL.search(text)
    if not match:
        return re.sub(r"[^a-z0-9]", "", text)
    series, model = match.groups()
    return f"{series or ''}{model}"
