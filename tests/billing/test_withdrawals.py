"""Miners' withdrawals (issue 13, point 6): held at once, paid or rejected by staff, the ledger moved once each."""
import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections
from rest_framework.test import APIClient

from billing.ledger import EXTERNAL, Move, account_for_miner, conservation_holds, ledger_totals, miner_owner, post
from billing.models import LedgerTransaction, Withdrawal
from billing.services import pricing_policy_publish, withdrawal_pay, withdrawal_reject, withdrawal_request
from marketplace.errors import ApiError
from marketplace.ids import secret_hash
from nodes.models import Node
from tests import factories

ADDRESS = "0x" + "ab" * 20


def earn(miner, amount: int) -> None:
    """Earnings as a settlement leaves them: available on the miner's account (from outside, here)."""
    post(kind=LedgerTransaction.Kind.DEPOSIT, key=f"earn:{miner.pk}:{amount}",
         moves=[Move(miner_owner(miner.pk), available=amount), Move(EXTERNAL, available=-amount)])


def account(miner) -> tuple[int, int]:
    row = account_for_miner(miner)
    row.refresh_from_db()
    return int(row.available_wei), int(row.reserved_wei)


@pytest.mark.django_db
def test_a_request_holds_the_amount_and_paying_or_rejecting_moves_it_once():
    miner = factories.miner("pay-me")
    earn(miner, 1000)
    paid, rejected = (withdrawal_request(miner=miner, amount=n, address=ADDRESS) for n in (300, 200))
    assert account(miner) == (500, 500) and paid.status == "requested"
    withdrawal_pay(withdrawal=paid, payout_reference="0xtxhash")
    withdrawal_reject(withdrawal=rejected, reason="address on a sanctions list")
    assert account(miner) == (700, 0)
    assert ledger_totals()["withdrawals"] == 300 and conservation_holds()
    for again in (lambda: withdrawal_pay(withdrawal=paid, payout_reference="0xother"),
                  lambda: withdrawal_reject(withdrawal=paid, reason="no"),
                  lambda: withdrawal_pay(withdrawal=rejected, payout_reference="0xlate")):
        with pytest.raises(ApiError) as refused:
            again()
        assert refused.value.code == "withdrawal_decided"
    assert account(miner) == (700, 0) and ledger_totals()["withdrawals"] == 300
    assert LedgerTransaction.objects.filter(kind="withdrawal").count() == 1
    assert Withdrawal.objects.get(pk=paid.pk).payout_reference == "0xtxhash"


@pytest.mark.django_db
@pytest.mark.parametrize("amount, address, code", [
    (2000, ADDRESS, "insufficient_balance"),
    (0, ADDRESS, "withdrawal_refused"),
    (99, ADDRESS, "withdrawal_refused"),  # under the policy's minimum
    (500, "0x1234", "withdrawal_refused"),
    (500, "https://evil.example/", "withdrawal_refused"),
])
def test_what_cannot_be_withdrawn_is_refused_and_holds_nothing(amount, address, code):
    pricing_policy_publish(gpu_rates_wei={}, priority_multipliers_bps={}, minimum_withdrawal_wei=100)
    miner = factories.miner("careful")
    earn(miner, 1000)
    with pytest.raises(ApiError) as refused:
        withdrawal_request(miner=miner, amount=amount, address=address)
    assert refused.value.code == code
    assert account(miner) == (1000, 0) and not Withdrawal.objects.exists()


@pytest.mark.django_db
def test_a_miner_asks_and_reads_its_withdrawals_over_the_api_with_a_node_token():
    node = factories.node()
    Node.objects.filter(pk=node.pk).update(token_hash=secret_hash("nodetok_w"))
    earn(node.miner, 10**18)
    api = APIClient(HTTP_AUTHORIZATION="Bearer nodetok_w")
    made = api.post("/v1/miners/withdrawals", {"amount_wei": str(4 * 10**17), "address": ADDRESS}, format="json")
    assert made.status_code == 201, made.content
    assert (made.json()["status"], made.json()["amount_wei"]) == ("requested", str(4 * 10**17))
    too_much = api.post("/v1/miners/withdrawals", {"amount_wei": str(10**18), "address": ADDRESS}, format="json")
    assert too_much.status_code == 402 and too_much.json()["error"]["code"] == "insufficient_balance"
    bad = api.post("/v1/miners/withdrawals", {"amount_wei": "-1", "address": ADDRESS}, format="json")
    assert bad.status_code == 422 and "amount_wei" in str(bad.json()["error"])
    listed = api.get("/v1/miners/withdrawals").json()["withdrawals"]
    assert [w["status"] for w in listed] == ["requested"]
    statement = api.get("/v1/miners/transactions").json()["transactions"]
    assert statement[0]["kind"] == "withdrawal_hold" and statement[0]["amount_wei"] == "0"
    assert APIClient().get("/v1/miners/withdrawals").status_code == 401


@pytest.mark.django_db
def test_staff_pay_or_reject_a_withdrawal_in_the_admin(client):
    get_user_model().objects.create_superuser("root", "root@example.invalid", "pw")
    client.login(username="root", password="pw")
    miner = factories.miner("admin-paid")
    earn(miner, 1000)
    first, second = (withdrawal_request(miner=miner, amount=n, address=ADDRESS) for n in (400, 100))
    url = f"/admin/billing/withdrawal/{first.pk}/change/"
    assert "decision" in client.get(url).content.decode()
    unreferenced = client.post(url, {"decision": "pay", "payout_reference": "", "reason": ""})
    assert unreferenced.status_code == 200 and "payout reference" in unreferenced.content.decode()
    assert client.post(url, {"decision": "pay", "payout_reference": "0xabc", "reason": ""}).status_code == 302
    assert client.post(f"/admin/billing/withdrawal/{second.pk}/change/",
                       {"decision": "reject", "payout_reference": "", "reason": "wrong chain"}).status_code == 302
    assert [w.status for w in Withdrawal.objects.order_by("pk")] == ["paid", "rejected"]
    assert account(miner) == (600, 0) and conservation_holds()
    assert "decision" not in client.get(url).content.decode(), "a decided withdrawal is history"


@pytest.mark.django_db(transaction=True)
def test_fifty_requests_at_once_never_hold_more_than_is_available():
    if connection.vendor != "postgresql":
        pytest.skip("real row-lock concurrency is a PostgreSQL test (CI's second run)")
    miner = factories.miner("crowded")
    earn(miner, 1000)
    barrier, outcomes, lock = threading.Barrier(50), [], threading.Lock()

    def ask() -> None:
        try:
            barrier.wait()
            try:
                withdrawal_request(miner=miner, amount=100, address=ADDRESS)
                outcome = "held"
            except ApiError as exc:
                outcome = exc.code
            with lock:
                outcomes.append(outcome)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=ask) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert outcomes.count("held") == 10 and outcomes.count("insufficient_balance") == 40, outcomes
    assert account(miner) == (0, 1000) and Withdrawal.objects.count() == 10 and conservation_holds()
