"""Real node agents enrolled with the live marketplace, and a customer with the private client."""

import pytest

from privacy.client import PrivateInferenceClient
from tests import factories
from tests.support.enrolled import start_enrolled_agent

CONTAINERS = [
    {"id": "echo", "entrypoint": "nodes.agent.builtin:echo", "models": ["echo"], "workers": 2},
    {"id": "sleep", "entrypoint": "nodes.agent.builtin:sleep", "models": ["sleep"], "workers": 2},
]


@pytest.fixture
def enroll(live_server, tmp_path, dispatcher):
    agents = []

    def _enroll(name: str, **config):
        agent = start_enrolled_agent(tmp_path, live_server.url, name, CONTAINERS, **config)
        agents.append(agent)
        return agent

    yield _enroll
    for agent in agents:
        agent.stop()


@pytest.fixture
def pricing(db):
    from billing.services import pricing_policy_publish

    # a base price per job: an echo may take under a millisecond, and a bill of 0 proves little
    pricing_policy_publish(model_base_prices_wei={"echo": "1000000000", "sleep": "1000000000"})


@pytest.fixture
def customer(db, pricing):
    return factories.customer("private-customer")


@pytest.fixture
def client(live_server, customer):
    from marketplace.services import api_key_create

    return PrivateInferenceClient(live_server.url, api_key_create(customer=customer).secret)
