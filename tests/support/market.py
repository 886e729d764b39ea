"""A whole marketplace for end-to-end tests: ``manage.py runmarket`` in a subprocess.

On the embedded default it is one process (Daphne, the in-process worker, SQLite
in a temporary folder). Where the environment names PostgreSQL, a broker and
Redis (CI's second run), the market gets a fresh database of its own and real
``rundramatiq`` worker processes.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
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
    command: list[str] = field(default_factory=list)

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

    def add_agent(self, tmp_path: Path, name: str, containers: list | None = None, **config):
        """An agent enrolled with this market; ``config`` adds agent config fields (``capacity``...)."""
        token = self.manage("createenrolltoken", "--miner", f"miner-{name}")
        return self._start_agent(tmp_path, name, token, containers, config)

    def add_agents(self, tmp_path: Path, names: list[str], containers: list | None = None, **config) -> list:
        """Several agents at once: their tokens in one shell, then started in parallel."""
        from concurrent.futures import ThreadPoolExecutor

        code = ("import json; from marketplace.services import miner_get_or_create; "
                "from nodes.services import enrollment_token_create; "
                f"print(json.dumps([enrollment_token_create(miner=miner_get_or_create(name='miner-' + n)).secret "
                f"for n in {names!r}]))")
        tokens = json.loads(self.shell(code))
        with ThreadPoolExecutor(max_workers=min(len(names), 10)) as pool:
            futures = [pool.submit(self._start_agent, tmp_path, name, token, containers, config)
                       for name, token in zip(names, tokens)]
            # every future is waited for, so that an agent that did start is kept (and stopped later)
            errors = [f.exception() for f in futures]
        started = [f.result() for f in futures if f.exception() is None]
        if any(errors):
            raise next(e for e in errors if e)
        return started

    def _start_agent(self, tmp_path: Path, name: str, token: str, containers: list | None, config: dict):
        from tests.support.agent import start_agent

        config = {**({"containers": containers} if containers else {}), **config}
        agent = start_agent(
            tmp_path / name, config, env=self.env,
            extra_args=["--marketplace", self.url, "--enroll-token", token, "--name", name],
        )
        self.agents.append(agent)
        return agent

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        """Read this market's database directly (cheaper than ``shell``): the rows of ``query``.
        Write it for both engines (``%s`` placeholders are turned into ``?`` for SQLite)."""
        if self.database:
            import psycopg

            with psycopg.connect(self.env["DATABASE_URL"], autocommit=True) as conn:
                return list(conn.execute(query, params).fetchall())
        import sqlite3

        conn = sqlite3.connect(f"file:{self.var_dir / 'marketplace.sqlite3'}?mode=ro", uri=True, timeout=30)
        try:
            return list(conn.execute(query.replace("%s", "?"), params).fetchall())
        finally:
            conn.close()

    def restart_web(self, timeout: float = 90) -> None:
        """Stop runmarket and start it again on the same port with the same environment (the
        embedded worker restarts with it; ``rundramatiq`` workers keep running)."""
        banners = self.log().count("Try it:")
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = subprocess.Popen(
            self.command, cwd=PROJECT_ROOT, env=self.env, stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while self.log().count("Try it:") <= banners:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"runmarket did not start again:\n{self.log()[-5000:]}")
            time.sleep(0.1)

    def worker_pids(self) -> list[int]:
        """The rundramatiq processes and all their children (the processes that run the actors)."""
        return [pid for worker in self.workers if worker.poll() is None for pid in process_tree(worker.pid)]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Every process, then what the market made on the services: its database and its queues."""
        try:
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
                    proc.wait()
            for worker in self.workers:  # forked children left behind by a parent that was killed
                with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone already
                    os.killpg(worker.pid, signal.SIGKILL)
        finally:
            try:
                if self.database:
                    _drop_postgres(*self.database)
            finally:
                if self.database:
                    delete_queues(self.env.get("DRAMATIQ_BROKER_URL", ""), self.env.get("DRAMATIQ_QUEUE", ""))


def queue_names(queue: str) -> list[str]:
    """Dramatiq's queue, its delay queue and its dead letters."""
    return [queue, f"{queue}.DQ", f"{queue}.XQ"]


def delete_queues(broker_url: str, queue: str) -> None:
    """Delete a market's queues on RabbitMQ (a Redis broker's keys go with its database)."""
    if not queue or not broker_url.startswith("amqp://"):
        return
    import pika

    with pika.BlockingConnection(pika.URLParameters(broker_url)) as conn:
        channel = conn.channel()
        for name in queue_names(queue):
            channel.queue_delete(name)


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process descended from it (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def thread_count(pid: int) -> int:
    """The ``Threads:`` line of /proc/<pid>/status (0 for a process that is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))


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
    market = Market(f"http://127.0.0.1:{port}", tmp_path / "var", market_env, process, log_path, database=database,
                    command=command)
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
                    # only this market's queue: a worker listening to every queue would also declare
                    # django_dramatiq's "default" queue on the shared broker, and leave it there
                    [sys.executable, "manage.py", "rundramatiq", "--processes", "1", "--threads", "8",
                     "--queues", market_env["DRAMATIQ_QUEUE"]],
                    # INFO at least: its "ready for action" line is how the harness knows it listens
                    cwd=PROJECT_ROOT, env={**market_env, "LOG_LEVEL": "INFO"}, stdout=open(worker_logs[-1], "wb"),
                    stderr=subprocess.STDOUT,
                    # a group of its own: a test can SIGKILL a worker with its forked children
                    start_new_session=True,
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
