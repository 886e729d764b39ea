"""A bad agent config stops start-up with a message naming the field."""
import json
import subprocess
import sys

import pytest

from nodes.agent.config import ConfigError, load_config
from tests.support.agent import PROJECT_ROOT


@pytest.mark.parametrize(
    "config,message",
    [
        ({"containers": []}, "containers must be a non-empty list"),
        ({"containers": [{"id": ""}]}, r"containers\[0\].id must be a non-empty string"),
        ({"containers": [{"id": "a", "entrypoint": "m:f", "colour": "red"}]}, "unknown fields: colour"),
        ({"containers": [{"id": "a"}]}, "exactly one of entrypoint or command"),
        ({"containers": [{"id": "a", "entrypoint": "nocolon"}]}, "entrypoint must look like"),
        ({"containers": [{"id": "a", "runtime": "docker", "image": "x"}]}, "needs an image and a port"),
        ({"containers": [{"id": "a", "runtime": "http", "url": "ftp://x"}]}, "url must be an http"),
        ({"containers": [{"id": "a", "runtime": "podman"}]}, "runtime must be one of"),
        ({"containers": [{"id": "a", "entrypoint": "m:f", "allowed_ips": ["not-an-ip"]}]}, "allowed_ips"),
        ({"containers": [{"id": "a", "entrypoint": "m:f"}, {"id": "a", "entrypoint": "m:g"}]}, "unique"),
        ({"rate_limit": {"num_requests": 0, "period": 1}}, "rate_limit"),
        ({"max_pending_jobs": 0}, "max_pending_jobs"),
        ({"surprise": True}, "unknown config fields: surprise"),
    ],
)
def test_a_bad_config_is_refused_naming_the_field(config, message):
    with pytest.raises(ConfigError, match=message):
        load_config(**config)


def test_runnode_refuses_a_bad_config_file_clearly(tmp_path):
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"containers": [{"id": "x", "runtime": "podman"}]}))
    result = subprocess.run(
        [sys.executable, "manage.py", "runnode", "--config", str(path), "--state-dir", str(tmp_path)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "bad agent config: containers[0].runtime must be one of process, docker, http" in result.stderr
    assert "Traceback" not in result.stderr


def test_runnode_refuses_a_config_that_is_not_json(tmp_path):
    path = tmp_path / "agent.json"
    path.write_text("{nope")
    result = subprocess.run(
        [sys.executable, "manage.py", "runnode", "--config", str(path)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1 and "is not valid JSON" in result.stderr
