"""Statements: every movement on an account, newest first, each with its job and time (issue 13, point 7)."""
import pytest
from rest_framework.test import APIClient

from billing.ledger import account_for_customer, account_for_miner
from billing.services import funds_refund, pricing_policy_publish
from jobs.models import Job
from jobs.services.lifecycle import job_cancel
from marketplace.ids import secret_hash
from nodes.models import Node
from tests import factories
from tests.billing.helpers import complete

pytestmark = pytest.mark.django_db

RATE = 1_000_000


@pytest.fixture(autouse=True)
def prices(db):
    pricing_policy_publish(gpu_rates_wei={"cpu": str(RATE)}, priority_multipliers_bps={}, default_expected_seconds=10,
                           platform_fee_bps=1000, minimum_charge_wei=0)


def submit(api) -> Job:
    response = api.post("/v1/jobs", {"model": "echo", "input": "x", "timeout_seconds": 30}, format="json")
    return Job.objects.get(public_id=response.json()["job_id"])


def statement(api, **query) -> list[dict]:
    lines, cursor = [], None
    while True:
        response = api.get("/v1/billing/transactions", {**query, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.content
        body = response.json()
        lines += body["transactions"]
        cursor = body["next_cursor"]
        assert body["has_more"] == (cursor is not None)
        if cursor is None:
            return lines


def test_a_customers_statement_shows_every_movement_and_adds_up_to_the_balance(alice, alice_api, bob_api, echo_node):
    done = complete(submit(alice_api), echo_node, duration_ms=4000)
    cancelled = submit(alice_api)
    job_cancel(job=cancelled)
    funds_refund(customer=alice, amount=123, reason="goodwill")
    lines = statement(alice_api, limit=2)  # paged two at a time, all of it
    kinds = [(line["kind"], line["job_id"]) for line in lines]
    assert kinds == [
        ("refund", None), ("release", cancelled.public_id), ("reservation", cancelled.public_id),
        ("charge", done.public_id), ("reservation", done.public_id), ("deposit", None),
    ]
    charge = lines[3]
    assert charge["amount_wei"] == str(-RATE * 4) and charge["reserved_change_wei"] == str(-RATE * 30)
    assert lines[4]["available_change_wei"] == str(-RATE * 30) and lines[4]["amount_wei"] == "0"
    assert lines[1]["reserved_change_wei"] == str(-RATE * 30) and lines[1]["amount_wei"] == "0"  # released whole
    account = account_for_customer(alice)
    assert sum(int(line["amount_wei"]) for line in lines) == int(account.balance_wei)
    assert all(line["created_at"].endswith("Z") for line in lines)
    assert [line["kind"] for line in statement(bob_api)] == ["deposit"], "only its own account"


def test_a_cursor_it_did_not_give_out_and_a_bad_limit_are_400s(alice_api):
    for query in ({"cursor": "!!"}, {"limit": "0"}, {"limit": "101"}, {"limit": "x"}):
        response = alice_api.get("/v1/billing/transactions", query)
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_query", query


def test_a_miners_statement_shows_its_payouts_with_a_node_token(alice_api, echo_node):
    Node.objects.filter(pk=echo_node.pk).update(token_hash=secret_hash("nodetok_statement"))
    job = complete(submit(alice_api), echo_node, duration_ms=2000)
    body = APIClient().get("/v1/miners/transactions", HTTP_AUTHORIZATION="Bearer nodetok_statement").json()
    (payout,) = body["transactions"]
    assert (payout["kind"], payout["job_id"], payout["amount_wei"]) == ("payout", job.public_id, str(job.payout_price_wei))
    assert int(account_for_miner(echo_node.miner).available_wei) == int(payout["amount_wei"])
    refused = APIClient().get("/v1/miners/transactions", HTTP_AUTHORIZATION="Bearer wrong")
    assert refused.status_code == 401
