"""Dependencies down: readiness says which, and the API answers in its own shape, never a 500 or a hang."""
import socket

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
