"""``manage.py runweb``: REST under gunicorn, WebSocket and streams under Daphne, one database.

Starts the real command on free ports. On the embedded default it runs with
``--allow-embedded`` (SQLite, in-process cache); where the environment names PostgreSQL,
Redis and RabbitMQ (CI's second run) it gets a database, a cache prefix and a queue of its
own, and removes them afterwards.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from websockets.sync.client import connect as websocket_connect

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("DATABASE_URL", "DRAMATIQ_BROKER_URL", "REDIS_URL")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def on_services() -> bool:
    return all(os.environ.get(name) for name in SERVICES)


def postgres_admin(url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(urlunsplit(urlsplit(url)._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(statement)


def manage(env: dict, *args: str) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


class WebTier:
    def __init__(self, tmp: Path):
        self.tag = f"webtier-{secrets.token_hex(4)}"
        self.env = {
            **os.environ,
            "MARKETPLACE_VAR_DIR": str(tmp / "var"),
            "CACHE_KEY_PREFIX": self.tag,
            "DRAMATIQ_QUEUE": self.tag,
            "SERVE_STATIC": "true",
        }
        self.database = None
        if on_services():
            self.database = self.tag.replace("-", "_")
            postgres_admin(os.environ["DATABASE_URL"], f'CREATE DATABASE "{self.database}"')
            self.env["DATABASE_URL"] = urlunsplit(urlsplit(os.environ["DATABASE_URL"])._replace(path=f"/{self.database}"))
        else:
            for name in SERVICES:
                self.env.pop(name, None)
        self.log_path = tmp / "runweb.log"
        self.process = None

    def start(self, *, workers: int = 2, threads: int = 2) -> None:
        manage(self.env, "migrate", "-v", "0")
        self.secret = manage(self.env, "shell", "-v", "0", "-c", (
            "from marketplace.services import api_key_create, customer_get_or_create\n"
            "from billing.services import funds_deposit\n"
            "from tests import factories\n"
            "factories.node(models=('echo',))\n"
            "c = customer_get_or_create(name='web-tier')\n"
            "funds_deposit(customer=c, amount=10**21, reason='test funds')\n"
            "print(api_key_create(customer=c).secret)"
        )).splitlines()[-1]
        for _ in range(3):  # a port may be taken between picking and binding it
            self.wsgi_port, self.asgi_port = free_port(), free_port()
            command = [sys.executable, "manage.py", "runweb", "--wsgi-port", str(self.wsgi_port),
                       "--asgi-port", str(self.asgi_port), "--workers", str(workers), "--threads", str(threads)]
            if not on_services():
                command.append("--allow-embedded")
            self.process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=self.env,
                                            stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT)
            if self._wait_until_both_answer():
                return
            self.stop_servers()
        raise RuntimeError(f"runweb did not start:\n{self.log()}")

    def _wait_until_both_answer(self) -> bool:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                requests.get(f"{self.wsgi}/v1/billing/account", timeout=2)
                requests.get(f"{self.asgi}/v1/jobs/none/events", timeout=2)
                return True
            except requests.RequestException:  # not listening yet, or a worker still booting
                time.sleep(0.2)
        return False

    @property
    def wsgi(self) -> str:
        return f"http://127.0.0.1:{self.wsgi_port}"

    @property
    def asgi(self) -> str:
        return f"http://127.0.0.1:{self.asgi_port}"

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.secret}"}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop_servers(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def remove(self) -> None:
        self.stop_servers()
        if self.database:
            postgres_admin(os.environ["DATABASE_URL"], f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        if os.environ.get("DRAMATIQ_BROKER_URL", "").startswith("amqp://") and on_services():
            import pika

            with pika.BlockingConnection(pika.URLParameters(os.environ["DRAMATIQ_BROKER_URL"])) as conn:
                channel = conn.channel()
                for name in (self.tag, f"{self.tag}.DQ", f"{self.tag}.XQ"):
                    channel.queue_delete(name)
        if os.environ.get("REDIS_URL") and on_services():
            import redis

            client = redis.Redis.from_url(os.environ["REDIS_URL"])
            for key in client.scan_iter(match=f"{self.tag}*"):
                client.delete(key)


@pytest.fixture(scope="module")
def tier(tmp_path_factory):
    web = WebTier(tmp_path_factory.mktemp("runweb"))
    try:
        web.start()
        yield web
    finally:
        web.remove()


def assert_problem(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["status"] == status and error["code"] == code and error["title"] and error["detail"]


def test_it_says_which_routes_each_server_takes(tier):
    banner = tier.log()
    gunicorn_line = next(line for line in banner.splitlines() if line.strip().startswith("gunicorn "))
    assert str(tier.wsgi_port) in gunicorn_line and "REST" in gunicorn_line
    daphne = banner.split("Daphne", 1)[1]
    for route in ("/ws/jobs/<job_id>/", "/v1/jobs/<job_id>/events", "/infernet/<api_key>/api/jobs/stream"):
        assert route in daphne


def test_rest_is_served_by_gunicorn(tier):
    response = requests.get(f"{tier.wsgi}/v1/billing/account", headers=tier.headers, timeout=10)

    assert response.status_code == 200, response.text
    assert response.headers["Server"].startswith("gunicorn")
    assert response.json()["available"] == str(10**21)


def test_gunicorns_errors_are_json_in_the_problem_shape(tier):
    assert_problem(requests.get(f"{tier.wsgi}/v1/billing/account", timeout=10), 401, "unauthorized")
    assert_problem(requests.get(f"{tier.wsgi}/v1/no-such-thing", headers=tier.headers, timeout=10), 404, "not_found")


def test_a_job_made_through_gunicorn_is_live_on_daphnes_websocket_and_stream(tier):
    submitted = requests.post(f"{tier.wsgi}/v1/jobs", json={"model": "echo", "input": "hello"},
                              headers=tier.headers, timeout=10)
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["job_id"]

    ws_url = f"ws://127.0.0.1:{tier.asgi_port}/ws/jobs/{job_id}/"
    with websocket_connect(ws_url, additional_headers=tier.headers, open_timeout=10) as ws:
        snapshot = json.loads(ws.recv(timeout=10))
    assert snapshot["type"] == "status" and snapshot["job_id"] == job_id

    with requests.get(f"{tier.asgi}/v1/jobs/{job_id}/events", headers=tier.headers, stream=True, timeout=10) as sse:
        assert sse.status_code == 200 and sse.headers["Content-Type"].startswith("text/event-stream")
        first = next(line for line in sse.iter_lines() if line.startswith(b"data:"))
    assert json.loads(first[len(b"data:"):])["job_id"] == job_id


def test_a_key_revoked_elsewhere_is_refused_by_gunicorn_on_its_next_request(tier):
    secret = manage(tier.env, "createapikey", "--customer", "web-tier").splitlines()[-1]
    headers = {"Authorization": f"Bearer {secret}"}
    assert requests.get(f"{tier.wsgi}/v1/billing/account", headers=headers, timeout=10).status_code == 200

    manage(tier.env, "shell", "-v", "0", "-c", (
        "from marketplace.ids import secret_hash\n"
        "from marketplace.models import ApiKey\n"
        "from marketplace.services import api_key_revoke\n"
        f"api_key_revoke(api_key=ApiKey.objects.get(secret_hash=secret_hash({secret!r})))"
    ))

    assert_problem(requests.get(f"{tier.wsgi}/v1/billing/account", headers=headers, timeout=10), 401, "unauthorized")


def test_gunicorn_does_not_outlive_a_killed_runweb(tmp_path):
    web = WebTier(tmp_path)  # a tier of its own: the shared one stays up
    try:
        web.start()
        web.process.kill()  # SIGKILL: runweb cleans nothing up itself
        web.process.wait(timeout=10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"{web.wsgi}/v1/billing/account", timeout=2)
            except requests.ConnectionError:
                break  # gunicorn let go of its port: nothing orphaned holds it
            time.sleep(0.2)
        else:
            pytest.fail(f"gunicorn still answers after runweb was killed:\n{web.log()}")
    finally:
        web.remove()
