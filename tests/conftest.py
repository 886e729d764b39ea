import os

import pytest

from tests import factories


def pytest_collection_modifyitems(config, items):
    """Tests marked ``docker`` skip where no engine runs, except under CI, which starts one."""
    from tests.support.docker_engine import docker_available

    if docker_available():
        return
    if os.environ.get("CI") == "true":
        return  # let them fail loudly: CI must not pass by skipping the Docker runtime
    skip = pytest.mark.skip(reason="no Docker engine running (CI starts one)")
    for item in items:
        if "docker" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Rate-limit counters live in the cache, and the pricing policy in each process; each test
    starts with neither (a test's database is rolled back under the process's copy)."""
    from django.core.cache import cache

    from billing.selectors import pricing_policy_forget

    cache.clear()
    pricing_policy_forget()
    yield


@pytest.fixture(scope="session", autouse=True)
def _close_database_pools(request):
    """Close pooled PostgreSQL connections before pytest-django drops the test database."""
    yield
    from django.db import connections

    for connection in connections.all():
        if hasattr(connection, "close_pool"):
            connection.close_pool()
        connection.close()


@pytest.fixture(autouse=True)
def sent_dispatches(monkeypatch):
    """The broker is the edge of these in-process tests: record what would be sent to it.

    A job's arrival and a freed slot ask a worker for their pass here, instead of running one
    where they happen (``schedule_here``): a test decides when passes run (``dispatcher``,
    ``hold``).
    """
    from jobs import tasks
    from jobs.dispatch import node_socket
    from jobs.services import submit

    monkeypatch.setattr(submit, "schedule_here", tasks.schedule_soon)
    monkeypatch.setattr(node_socket, "schedule_here", tasks.schedule_soon)
    sent = []
    monkeypatch.setattr(tasks.dispatch_job, "send", lambda *args, **kwargs: sent.append(args))
    monkeypatch.setattr(tasks.dispatch_job, "send_with_options", lambda **kwargs: sent.append(kwargs.get("args")))
    return sent


@pytest.fixture(scope="session")
def live_server():
    """The marketplace over ASGI (nodes dial its WebSocket), in place of pytest-django's WSGI one."""
    from tests.support.asgi_server import AsgiLiveServer

    server = AsgiLiveServer()
    yield server
    server.stop()


@pytest.fixture
def dispatcher(monkeypatch, sent_dispatches):
    """Scheduler passes run when a job arrives or a slot frees, and the watchdog sweeps: a worker's
    part, without a broker."""
    from jobs import tasks
    from tests.support.dispatching import Dispatcher

    dispatcher = Dispatcher(sent_dispatches)
    monkeypatch.setattr(tasks.dispatch_job, "send", dispatcher.send)
    dispatcher.start()
    yield dispatcher
    dispatcher.stop()


@pytest.fixture
def alice(db):
    return factories.customer("alice")


@pytest.fixture
def bob(db):
    return factories.customer("bob")


@pytest.fixture
def alice_api(alice):
    return factories.api_client(alice)


@pytest.fixture
def bob_api(bob):
    return factories.api_client(bob)


@pytest.fixture
def echo_node(db):
    return factories.node(models=("echo", "sleep"))
