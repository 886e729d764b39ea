"""A whole marketplace for end-to-end tests: ``manage.py runmarket`` in a subprocess.

On the embedded default it is one process (Daphne, the in-process worker, SQLite
in a temporary folder). Where the environment names PostgreSQL, a broker and
Redis (CI's second run), the market gets a fresh database of its own and real
``rundramatiq`` worker processes.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests

from tests.support.agent import PROJECT_ROOT, free_port

SERVICES = ("DATABASE_URL", "DRAMATIQ_BROKER_URL", "REDIS_URL")


def services_configured() -> bool:
    return all(os.environ.get(name) for name in SERVICES)


def _fresh_postgres(url: str) -> tuple[str, str]:
    import psycopg

    name = f"market_e2e_{secrets.token_hex(4)}"
    parts = urlsplit(url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}")), name


def _drop_postgres(url: str, name: str) -> None:
    import psycopg

    admin = urlunsplit(urlsplit(url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Market:
    url: str
    var_dir: Path
    env: dict
    process: subprocess.Popen
    log_path: Path
    workers: list[subprocess.Popen] = field(default_factory=list)
    agents: list = field(default_factory=list)
    database: tuple[str, str] | None = None

    @property
    def credentials(self) -> dict:
        return json.loads((self.var_dir / "demo-credentials.json").read_text())

    @property
    def api_key(self) -> str:
        return self.credentials["customer"]["api_key"]

    def headers(self, key: str | None = None) -> dict:
        return {"Authorization": f"Bearer {key or self.api_key}"}

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=PROJECT_ROOT, env=self.env,
            capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def shell(self, code: str) -> str:
        """Run Python in ``manage.py shell`` against this market; the last line it printed."""
        lines = [line for line in self.manage("shell", "-v", "0", "-c", code).splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def submit(self, body: dict, key: str | None = None) -> str:
        response = requests.post(f"{self.url}/v1/jobs", json=body, headers=self.headers(key), timeout=10)
        assert response.status_code == 201, response.text
        return response.json()["job_id"]

    def job(self, job_id: str, key: str | None = None) -> dict:
        response = requests.get(f"{self.url}/v1/jobs/{job_id}", headers=self.headers(key), timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def wait(self, job_id: str, statuses=("completed", "failed", "cancelled", "expired"), timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in statuses:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"{job_id} is still {job['status']} after {timeout}s: {job}\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def add_agent(self, tmp_path: Path, name: str, containers: list | None = None):
        from tests.support.agent import start_agent

        token = self.manage("createenrolltoken", "--miner", f"miner-{name}")
        config = {"containers": containers} if containers else {}
        agent = start_agent(
            tmp_path / name, config, env=self.env,
            extra_args=["--marketplace", self.url, "--enroll-token", token, "--name", name],
        )
        self.agents.append(agent)
        return agent

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        for process in [*self.agents, *self.workers, self.process]:
            proc = getattr(process, "process", process)
            if proc.poll() is None:
                proc.terminate()
        for process in [*self.agents, *self.workers, self.process]:
            proc = getattr(process, "process", process)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.database:
            _drop_postgres(*self.database)


def start_market(tmp_path: Path, *, agent: bool = True, workers: int = 2, env: dict | None = None) -> Market:
    """runmarket on free ports; other ports if one was taken between picking and binding it."""
    for attempt in range(3):
        try:
            return _start_market(tmp_path / f"try-{attempt}" if attempt else tmp_path, agent, workers, env)
        except RuntimeError as exc:
            if "address already in use" not in str(exc):
                raise
    return _start_market(tmp_path / "try-last", agent, workers, env)


def _start_market(tmp_path: Path, agent: bool, workers: int, env: dict | None) -> Market:
    tmp_path.mkdir(parents=True, exist_ok=True)
    port = free_port()
    market_env = {
        **os.environ,
        "MARKETPLACE_VAR_DIR": str(tmp_path / "var"),
        "NODE_AGENT_STATE_DIR": str(tmp_path / "var" / "agent"),
        "CACHE_KEY_PREFIX": f"e2e-{secrets.token_hex(4)}",
        # markets alive at once share the broker; each gets its own queue
        "DRAMATIQ_QUEUE": f"e2e-{secrets.token_hex(4)}",
        "NODE_HEARTBEAT_SECONDS": "1",
        "NODE_OFFLINE_AFTER_SECONDS": "5",
        "JOB_QUEUE_TIMEOUT_SECONDS": "4",
        # tests poll the API; the limit itself is tested with a customer override
        "RATE_LIMIT_PER_MINUTE": "100000",
        "RATE_LIMIT_PER_HOUR": "1000000",
        **(env or {}),
    }
    database = None
    if services_configured():
        url, name = _fresh_postgres(os.environ["DATABASE_URL"])
        market_env["DATABASE_URL"] = url
        database = (os.environ["DATABASE_URL"], name)
    else:
        for name in SERVICES:
            market_env.pop(name, None)
    command = [sys.executable, "manage.py", "runmarket", "--port", str(port), "--agent-port", str(free_port())]
    if not agent:
        command.append("--no-agent")
    log_path = tmp_path / "market.log"
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=market_env, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT
    )
    market = Market(f"http://127.0.0.1:{port}", tmp_path / "var", market_env, process, log_path, database=database)
    deadline = time.monotonic() + 90
    banner = re.compile(r"^Try it:", re.M)
    while not banner.search(market.log()):
        if process.poll() is not None or time.monotonic() > deadline or "address already in use" in market.log():
            market.stop()
            raise RuntimeError(f"runmarket did not start:\n{market.log()}")
        time.sleep(0.1)
    if "address already in use" in market.log():  # the local agent lost its port: try again
        market.stop()
        raise RuntimeError(f"runmarket's agent could not bind:\n{market.log()}")
    if database:
        worker_logs = []
        for index in range(workers):
            worker_logs.append(tmp_path / f"worker-{index}.log")
            market.workers.append(
                subprocess.Popen(
                    [sys.executable, "manage.py", "rundramatiq", "--processes", "1", "--threads", "8"],
                    cwd=PROJECT_ROOT, env=market_env, stdout=open(worker_logs[-1], "wb"), stderr=subprocess.STDOUT,
                )
            )
        # a job sent before any worker listens would wait out the tests' short queue deadline
        deadline = time.monotonic() + 60
        while not all("ready for action" in path.read_text(errors="replace") for path in worker_logs):
            if time.monotonic() > deadline or any(w.poll() is not None for w in market.workers):
                market.stop()
                raise RuntimeError("the rundramatiq workers did not start:\n" + "\n".join(
                    path.read_text(errors="replace")[-2000:] for path in worker_logs))
            time.sleep(0.1)
    return market
