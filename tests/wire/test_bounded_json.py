"""JSON from a peer: size and depth are checked before the parser runs, storability after."""
import json
import subprocess
import sys

import pytest

from wire.bounded_json import (
    INVALID, MAX_DEPTH, NOT_FINITE, TOO_DEEP, TOO_LARGE, UNSTORABLE, JsonRejected, loads_bounded,
)


@pytest.mark.parametrize("raw, code", [
    (b"[" * 100_000 + b"]" * 100_000, TOO_DEEP),
    ('{"token":' + "[" * 300_000 + "]" * 300_000 + "}", TOO_DEEP),
    (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), TOO_DEEP),
    (b"x" * 1025, TOO_LARGE),
    (b"[NaN]", NOT_FINITE),
    (b'{"a": -Infinity}', NOT_FINITE),
    (b"[1e400]", NOT_FINITE),
    (b'["\\ud800"]', UNSTORABLE),
    (b'{"\\udfff": 1}', UNSTORABLE),
    (b'{"a": "\\u0000"}', UNSTORABLE),
    (b'{"a": 1', INVALID),
    (b"\xff\xfe", INVALID),
    (b"1" * 5000, INVALID),  # more digits than Python turns into an int
])
def test_what_cannot_be_parsed_safely_or_stored_is_refused_with_its_reason(raw, code):
    with pytest.raises(JsonRejected) as refused:
        loads_bounded(raw, max_bytes=1024 if code == TOO_LARGE else 10_000_000)
    assert refused.value.code == code


def test_a_document_at_the_limits_parses():
    deep = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert loads_bounded(deep, max_bytes=len(deep)) == json.loads(deep)
    text = json.dumps({"brackets in a string": "[" * 10_000, "é": 1.5, "big": 10**77})
    assert loads_bounded(text.encode(), max_bytes=len(text)) == json.loads(text)


def test_nothing_here_leaves_the_interpreter_able_to_overflow_its_stack():
    """py_ecc (under eth_abi, eth_account) raises the recursion limit to 100,000 when imported,
    after which deep enough recursion overflows the C stack and kills the process instead of
    raising RecursionError. Every module of the marketplace and the agent is imported in a fresh
    interpreter: the limit it started with must still hold."""
    script = """
import pkgutil, importlib, sys
before = sys.getrecursionlimit()
import django, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
django.setup()
for package in ("marketplace", "jobs", "nodes", "billing", "privacy", "wire"):
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        if ".migrations." in info.name or info.name.endswith((".tests", ".__main__")):
            continue
        importlib.import_module(info.name)
print(before, sys.getrecursionlimit(), "py_ecc" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    before, after, imported = done.stdout.split()
    assert imported == "True", "the module that raised the limit was not imported: this test tests nothing"
    assert after == before
