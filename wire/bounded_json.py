"""JSON from a peer, parsed only once it is known to be safe to parse, and held to what every
store here can keep. Shared by the marketplace and the node agent (no Django here).

A parser recurses once per level of nesting: a deep enough document overflows the C stack
and kills the process instead of raising, so depth is checked before parsing, and so is
size. What parses must also be storable: PostgreSQL's text and jsonb hold no U+0000 and no
lone surrogate, and no JSON column holds NaN or an infinity (``1e400`` parses as one).
Every surface turns ``JsonRejected`` into its own error shape; ``code`` says which.
"""
from __future__ import annotations

import json
import math
import re

# the deepest a document from outside may nest: jobs, frames and forms here need a few levels
MAX_DEPTH = 64

TOO_LARGE, TOO_DEEP, INVALID, NOT_FINITE, UNSTORABLE = (
    "too_large", "too_deep", "invalid_json", "not_finite", "unstorable")
NUL_MESSAGE = "the request holds a NUL character (U+0000), which cannot be stored"
SURROGATE_MESSAGE = "the request holds a lone surrogate (U+D800 to U+DFFF), which is not text and cannot be stored"


class JsonRejected(ValueError):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


# a JSON string (skipped whole by the regex engine) or one bracket
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def nesting_depth_exceeds(text: str | bytes, limit: int = MAX_DEPTH) -> bool:
    """True if brackets nest deeper than ``limit``. Strings are skipped by the regex engine, so
    the Python loop sees brackets and strings only, never every character."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    depth = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > limit:
                return True
        elif token in "]}":
            depth -= 1
    return False


def _refuse_constant(name: str):
    raise JsonRejected(f"{name} is not a number JSON allows", NOT_FINITE)


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise JsonRejected(f"the number {text[:40]} is too large to store", NOT_FINITE)
    return value


def unstorable(value) -> str | None:
    """Why ``value`` (parsed JSON) cannot be stored: a NUL or a lone surrogate in a string or a
    key; None if it can. Recursive, so only for documents already held to ``MAX_DEPTH``."""
    if isinstance(value, str):
        if "\x00" in value:
            return NUL_MESSAGE
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return SURROGATE_MESSAGE
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = unstorable(key) or unstorable(item)
            if found:
                return found
    elif isinstance(value, list):
        for item in value:
            found = unstorable(item)
            if found:
                return found
    return None


def loads_bounded(raw: str | bytes, *, max_bytes: int, max_depth: int = MAX_DEPTH, storable: bool = True):
    """Parse ``raw``, or raise ``JsonRejected``: over ``max_bytes``, nested past ``max_depth``,
    or not JSON; and, unless ``storable`` is False (a node's own API, which stores nothing),
    NaN or an infinity, or holding what cannot be stored."""
    if len(raw) > max_bytes:
        raise JsonRejected(f"the body is larger than {max_bytes} bytes", TOO_LARGE)
    if nesting_depth_exceeds(raw, max_depth):
        raise JsonRejected(f"the JSON nests deeper than {max_depth} levels", TOO_DEEP)
    try:
        if not storable:
            return json.loads(raw)
        value = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite)
    except JsonRejected:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise JsonRejected(f"not valid JSON: {exc}", INVALID) from None
    problem = unstorable(value)
    if problem:
        raise JsonRejected(problem, UNSTORABLE)
    return value
