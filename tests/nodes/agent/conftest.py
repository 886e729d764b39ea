import sys

import pytest

from tests.support.agent import start_agent

T = "tests.nodes.agent.containers"
PY = sys.executable


def process(id, entrypoint=None, command=None, **extra):
    container = {"id": id, "runtime": "process", **extra}
    if entrypoint:
        container["entrypoint"] = f"{T}:{entrypoint}"
    else:
        container["command"] = command
    return container


TEST_CONTAINERS = [
    {"id": "echo", "entrypoint": "nodes.agent.builtin:echo", "workers": 2, "models": ["echo"]},
    {"id": "sleep", "entrypoint": "nodes.agent.builtin:sleep", "workers": 3, "models": ["sleep"]},
    {"id": "tokens", "entrypoint": "nodes.agent.builtin:tokens", "models": ["tokens"]},
    process("upper", "upper"),
    process("suffix", "suffix", external=False),
    process("refuse", "refuse"),
    process("crash", "crash"),
    process("hang", "hang", timeout_seconds=1),
    process("chatty", "chatty"),
    process("not_json", "not_json"),
    process("pid", "pid"),
    process(
        "wordcount",
        command=[PY, "-c", "import json,sys; d=json.load(sys.stdin); print(json.dumps({'words': len(d['text'].split())}))"],
    ),
    process("cmd_crash", command=["sh", "-c", "echo 'segfault in the model' >&2; exit 3"]),
    process("cmd_hang", command=["sleep", "60"], timeout_seconds=1),
    process("cmd_not_json", command=["sh", "-c", "echo this is not json"]),
    process("proving", "upper", generates_proofs=True),
    process("private", "upper", allowed_ips=["10.0.0.0/8"]),
]


@pytest.fixture(scope="session")
def agent(tmp_path_factory):
    """One agent with the test containers, shared by the tests that only read from it."""
    running = start_agent(tmp_path_factory.mktemp("agent"), {"containers": TEST_CONTAINERS})
    yield running
    running.stop()
