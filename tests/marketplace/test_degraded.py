"""Dependencies down: readiness says which, and the API answers in its own shape, never a 500 or a hang."""
import shutil
import socket
import subprocess
import time

import pytest
from django.db import OperationalError
from django.test import Client

from tests import factories


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.django_db
def test_readiness_says_ready_with_every_dependency_up():
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ready" and body["checks"]["database"] == "ok"
    assert set(body["checks"]) <= {"database", "cache", "broker"}
    assert Client().get("/healthz").json() == {"status": "alive"}


@pytest.mark.django_db
def test_readiness_names_the_dependency_that_is_down(settings, monkeypatch):
    from marketplace import health

    settings.DRAMATIQ_BROKER_URL = f"amqp://guest:guest@127.0.0.1:{_closed_port()}"
    monkeypatch.setattr(health, "_database", lambda: (_ for _ in ()).throw(OperationalError("connection refused")))
    response = Client().get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"].startswith("down: OperationalError") and checks["broker"].startswith("down:")


@pytest.mark.django_db
def test_with_the_database_down_the_api_and_the_gateway_answer_503_in_their_shapes(monkeypatch):
    from jobs import apis
    from jobs.gateway import views

    alice = factories.customer("alice")
    api = factories.api_client(alice)

    def down(*args, **kwargs):
        raise OperationalError("could not connect to server: Connection refused")

    monkeypatch.setattr(apis.JobListCreateApi, "get", down)
    response = api.get("/v1/jobs")
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response.json()["error"]["code"] == "database_unavailable"

    monkeypatch.setattr(views, "gateway_principal", down)
    gateway = Client().get("/infernet/whatever/api/jobs")
    assert gateway.status_code == 503 and gateway.json() == {"error": "Service unavailable"}


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server (CI installs it)")
@pytest.mark.django_db
def test_redis_stopped_mid_run_and_back(settings, tmp_path):
    """A Redis of our own on a spare port, stopped while the API is using it: authenticated calls
    keep answering (the cache fails open), readiness says the cache is down, and once Redis is
    back both are as before."""
    from marketplace.services import api_key_create

    port = _closed_port()

    def redis_up() -> subprocess.Popen:
        process = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
                                    "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return process
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    redis = redis_up()
    try:
        settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
        settings.CACHES = {"default": {
            "BACKEND": "marketplace.redis_cache.RedisCache", "LOCATION": settings.REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 1.0},
        }}
        api = factories.api_client(factories.customer("alice"))
        other = api_key_create(customer=factories.customer("bob"))
        assert [api.get("/v1/billing/account").status_code for _ in range(3)] == [200] * 3  # the key is cached
        assert Client().get("/readyz").json()["checks"]["cache"] == "ok"

        redis.kill()
        redis.wait(10)
        assert [api.get("/v1/billing/account").status_code for _ in range(3)] == [200] * 3
        assert api.get("/v1/jobs").status_code == 200
        bob = Client(HTTP_AUTHORIZATION=f"Bearer {other.secret}")
        assert bob.get("/v1/billing/account").status_code == 200, "a key never cached is read from the database"
        ready = Client().get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["cache"].startswith("down:")

        redis = redis_up()
        assert api.get("/v1/billing/account").status_code == 200
        assert Client().get("/readyz").status_code in (200, 503)  # the broker may be absent here: cache is what matters
        assert Client().get("/readyz").json()["checks"]["cache"] == "ok"
    finally:
        redis.kill()
        redis.wait(10)
