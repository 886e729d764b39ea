import pytest

from tests import factories


@pytest.fixture(autouse=True)
def sent_dispatches(monkeypatch):
    """The broker is the edge of these in-process tests: record what would be sent to it."""
    from jobs import tasks

    sent = []
    monkeypatch.setattr(tasks.dispatch_job, "send", lambda *args, **kwargs: sent.append(args))
    monkeypatch.setattr(tasks.dispatch_job, "send_with_options", lambda **kwargs: sent.append(kwargs.get("args")))
    monkeypatch.setattr(tasks.cancel_on_node, "send", lambda *args, **kwargs: sent.append(("cancel", *args)))
    return sent


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
