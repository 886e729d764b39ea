"""Real node agents for tests: ``manage.py runnode`` in a subprocess on a free loopback port."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningAgent:
    url: str
    port: int
    process: subprocess.Popen
    state_dir: Path
    log_path: Path

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=10, **kwargs)

    def post(self, path: str, body=None, **kwargs) -> requests.Response:
        return requests.post(self.url + path, json=body, timeout=30, **kwargs)

    def submit(self, containers: list[str], data: dict, **extra) -> str:
        response = self.post("/api/jobs", {"containers": containers, "data": data, **extra})
        assert response.status_code == 200, response.text
        return response.json()["id"]

    def result(self, job_id: str, intermediate: bool = False) -> dict:
        params = {"id": job_id}
        if intermediate:
            params["intermediate"] = "true"
        response = self.get("/api/jobs", params=params)
        assert response.status_code == 200, response.text
        (job,) = response.json()
        return job

    def wait(self, job_id: str, timeout: float = 30, intermediate: bool = False) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = self.result(job_id, intermediate)
            if job["status"] != "running":
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still running after {timeout}s: {job}")
            time.sleep(0.02)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_agent(
    tmp_path: Path,
    config: dict | None = None,
    state_dir: Path | None = None,
    startup_timeout: float = 60,
    env: dict | None = None,
    extra_args: list[str] | None = None,
) -> RunningAgent:
    """Start ``runnode`` on a free port; another port if that one was taken meanwhile.

    A free port can be taken by another process between picking it and binding it;
    the agent listens before it enrols, so a retry spends no enrolment token.
    """
    for _ in range(3):
        try:
            return _start_agent(tmp_path, config, state_dir, startup_timeout, env, extra_args)
        except PortTaken:
            continue
    return _start_agent(tmp_path, config, state_dir, startup_timeout, env, extra_args)


class PortTaken(RuntimeError):
    """The agent could not bind the port it was given: another process took it first."""


def _start_agent(tmp_path, config, state_dir, startup_timeout, env, extra_args) -> RunningAgent:
    port = free_port()
    tmp_path.mkdir(parents=True, exist_ok=True)
    state_dir = state_dir or tmp_path / "state"
    command = [sys.executable, "manage.py", "runnode", "--port", str(port), "--state-dir", str(state_dir)]
    if config is not None:
        config_path = tmp_path / f"agent-{port}.json"
        config_path.write_text(json.dumps({"port": port, **config}))
        command += ["--config", str(config_path)]
    command += extra_args or []
    log_path = tmp_path / f"agent-{port}.log"
    log_file = open(log_path, "wb")
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
    )
    agent = RunningAgent(f"http://127.0.0.1:{port}", port, process, state_dir, log_path)
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            if "address already in use" in agent.log():
                raise PortTaken(agent.log())
            raise RuntimeError(f"agent exited with {process.returncode}:\n{agent.log()}")
        try:
            healthy = requests.get(agent.url + "/health", timeout=1).status_code == 200
        except requests.RequestException:  # not listening yet, or slow to answer on a busy machine
            healthy = False
        # an agent given a marketplace is ready once it has enrolled (it listens first)
        if healthy and ("--marketplace" not in command or "enrolled with" in agent.log()):
            return agent
        time.sleep(0.05)
    agent.stop()
    raise RuntimeError(f"agent did not come up in {startup_timeout}s:\n{agent.log()}")
