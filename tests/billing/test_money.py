"""Every job reserves its worst case; what a node ran for the customer is charged; every other end releases it."""
import pytest
from django.utils import timezone

from billing.ledger import account_for_customer, account_for_miner, conservation_holds, ledger_totals, platform_account
from billing.models import LedgerTransaction
from billing.services import funds_refund, pricing_policy_publish
from jobs.models import Job, JobStatus
from jobs.services.lifecycle import job_transition
from jobs.services.money import job_billing_close
from tests import factories
from tests.billing.helpers import complete, end, start

pytestmark = pytest.mark.django_db

RATE = 1_000_000  # wei per GPU-second for "cpu" in these tests


@pytest.fixture(autouse=True)
def prices(db):
    pricing_policy_publish(
        gpu_rates_wei={"cpu": str(RATE)}, priority_multipliers_bps={"normal": 10000, "high": 20000},
        default_expected_seconds=10, platform_fee_bps=1000, minimum_charge_wei=500,
        model_base_prices_wei={"echo": "100"},
    )


def submit(api, **extra):
    return api.post("/v1/jobs", {"model": "echo", "input": "x", **extra}, format="json")


def account(customer):
    account = account_for_customer(customer)
    account.refresh_from_db()
    return int(account.available_wei), int(account.reserved_wei)


def test_the_quote_is_the_expected_cost_and_the_reservation_the_whole_timeout(alice, alice_api, echo_node):
    before = account(alice)[0]
    body = submit(alice_api, timeout_seconds=60).json()
    quote, worst = 100 + RATE * 10, 100 + RATE * 60
    assert body["estimated_cost_wei"] == str(quote)
    assert account(alice) == (before - worst, worst)
    job = Job.objects.get(public_id=body["job_id"])
    assert (job.billing_status, int(job.quoted_price_wei), int(job.reserved_price_wei)) == ("reserved", quote, worst)
    # without a timeout, the default hour; never more than the customer's max_price_wei
    assert int(Job.objects.get(public_id=submit(alice_api).json()["job_id"]).reserved_price_wei) == 100 + RATE * 3600
    capped = submit(alice_api, timeout_seconds=60, max_price_wei=str(quote + 7)).json()
    assert int(Job.objects.get(public_id=capped["job_id"]).reserved_price_wei) == quote + 7
    assert conservation_holds()


def test_a_job_longer_than_its_quote_is_charged_all_it_ran(alice, alice_api, echo_node):
    """The bug this replaced: the reservation was the quote (the model's median run), and the
    charge was capped at it, so a 20 s job was billed as a 10 s one and its miner underpaid."""
    job = Job.objects.get(public_id=submit(alice_api, timeout_seconds=60).json()["job_id"])
    job = complete(job, echo_node, duration_ms=20_000)
    charged = 100 + RATE * 20
    assert (int(job.quoted_price_wei), int(job.charged_price_wei)) == (100 + RATE * 10, charged)
    assert int(account_for_miner(echo_node.miner).available_wei) == charged - charged // 10
    assert account(alice)[1] == 0
    assert conservation_holds()


def test_a_container_failing_on_the_customers_input_is_charged_for_the_time_it_ran(alice, alice_api, echo_node):
    job = start(Job.objects.get(public_id=submit(alice_api).json()["job_id"]), echo_node)
    receipt = {"body": {"duration_ms": "3000", "status": "failed"}, "hash": "hf", "signature": "s", "signer": "k"}
    job_transition(job=job, expected=JobStatus.RUNNING, new_status=JobStatus.FAILED, reason="container failed",
                   error="bad input", receipt=receipt, receipt_verified=True, receipt_hash="hf")
    job.refresh_from_db()
    assert (job.billing_status, int(job.charged_price_wei)) == ("settled", 100 + RATE * 3)
    assert int(account_for_miner(echo_node.miner).available_wei) == int(job.payout_price_wei) > 0
    assert conservation_holds()


def test_a_job_stopped_at_its_timeout_is_charged_for_its_timeout(alice, alice_api, echo_node):
    from datetime import timedelta

    from jobs.dispatch.attempts import attempt_timed_out

    job = start(Job.objects.get(public_id=submit(alice_api, timeout_seconds=30).json()["job_id"]), echo_node)
    Job.objects.filter(pk=job.pk).update(started_at=timezone.now() - timedelta(seconds=31))
    job.refresh_from_db()
    attempt_timed_out(job=job)
    job.refresh_from_db()
    assert (job.status, job.error_code) == ("failed", "timed_out")
    assert (job.billing_status, int(job.charged_price_wei)) == ("settled", 100 + RATE * 30)
    assert int(job.charged_price_wei) == int(job.reserved_price_wei)
    assert account(alice)[1] == 0
    assert conservation_holds()


def test_not_enough_balance_is_a_402_and_no_job(echo_node):
    poor = factories.customer("poor", funds=RATE * 5)
    api = factories.api_client(poor)
    response = submit(api)
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "insufficient_balance"
    assert not Job.objects.filter(customer=poor).exists()
    assert account(poor) == (RATE * 5, 0)


def test_a_max_price_below_what_the_first_second_costs_is_refused(alice, alice_api, echo_node):
    response = submit(alice_api, max_price_wei=str(100 + RATE - 1))
    error = response.json()["error"]
    assert response.status_code == 402 and error["code"] == "price_above_max"
    assert error["rate_wei_per_second"] == str(RATE) and str(RATE) in error["detail"]
    assert not Job.objects.exists()
    # enough for its first second: it runs for as long as that pays
    assert submit(alice_api, max_price_wei=str(100 + RATE)).status_code == 201
    assert submit(alice_api, max_price_wei=str(10**18)).status_code == 201


def test_the_monthly_spend_cap(alice, alice_api, echo_node):
    worst = 100 + RATE * 10  # what each job holds: its whole 10 s timeout
    alice.monthly_spend_cap_wei = worst * 2
    alice.save()
    assert submit(alice_api, timeout_seconds=10).status_code == 201
    assert submit(alice_api, timeout_seconds=10).status_code == 201
    refused = submit(alice_api, timeout_seconds=10)
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "spend_cap_exceeded"


def test_the_per_key_budget(alice, echo_node):
    api = factories.api_client(alice)
    api.api_key.api_key.budget_wei = 100 + RATE * 10
    api.api_key.api_key.save()
    assert submit(api, timeout_seconds=10).status_code == 201
    refused = submit(api, timeout_seconds=10)
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "key_budget_exceeded"
    assert submit(factories.api_client(alice), timeout_seconds=10).status_code == 201  # another key, its own budget


def test_a_verified_completion_debits_the_actual_cost_pays_the_miner_and_keeps_the_fee(alice, alice_api, echo_node):
    start_available = account(alice)[0]
    job = Job.objects.get(public_id=submit(alice_api).json()["job_id"])
    job = complete(job, echo_node, duration_ms=2500)
    charged = 100 + RATE * 2500 // 1000
    fee = charged // 10
    assert (job.billing_status, int(job.charged_price_wei), int(job.fee_price_wei), int(job.payout_price_wei)) == (
        "settled", charged, fee, charged - fee)
    assert account(alice) == (start_available - charged, 0)
    assert int(account_for_miner(echo_node.miner).available_wei) == charged - fee
    assert int(platform_account().available_wei) == fee
    assert conservation_holds()


def test_a_settle_reads_no_pricing_policy_while_the_process_holds_the_current_one(alice, alice_api, echo_node):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    job = start(Job.objects.get(public_id=submit(alice_api).json()["job_id"]), echo_node)
    with CaptureQueriesContext(connection) as queries:  # inside the test's transaction, as a settle is
        job = complete(job, echo_node, duration_ms=2500)
    assert job.billing_status == "settled"
    assert not [q for q in queries.captured_queries if "pricingpolicy" in q["sql"]]


def test_the_charge_never_exceeds_the_reservation(alice, alice_api, echo_node):
    job = Job.objects.get(public_id=submit(alice_api).json()["job_id"])
    job = complete(job, echo_node, duration_ms=10**9)
    assert int(job.charged_price_wei) == int(job.reserved_price_wei)
    assert conservation_holds()


def test_the_minimum_charge_applies(alice, alice_api, echo_node):
    job = complete(Job.objects.get(public_id=submit(alice_api).json()["job_id"]), echo_node, duration_ms=0)
    assert int(job.charged_price_wei) == 500


@pytest.mark.parametrize("status", [JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED])
def test_every_other_end_releases_everything(alice, alice_api, echo_node, status):
    before = account(alice)
    job = Job.objects.get(public_id=submit(alice_api).json()["job_id"])
    job = end(job, status, node=echo_node if status == JobStatus.FAILED else None)
    assert job.billing_status == "released" and int(job.charged_price_wei) == 0
    assert account(alice) == before
    assert int(account_for_miner(echo_node.miner).available_wei) == 0
    assert conservation_holds()


def test_a_completion_whose_receipt_did_not_verify_pays_nobody(alice, alice_api, echo_node):
    before = account(alice)
    job = complete(Job.objects.get(public_id=submit(alice_api).json()["job_id"]), echo_node, 1000, verified=False)
    assert job.billing_status == "released" and account(alice) == before


def test_a_receipt_delivered_twice_settles_once(alice, alice_api, echo_node):
    job = complete(Job.objects.get(public_id=submit(alice_api).json()["job_id"]), echo_node, duration_ms=1000)
    paid = int(account_for_miner(echo_node.miner).available_wei)
    job_billing_close(job=job)
    Job.objects.filter(pk=job.pk).update(billing_status="reserved")  # even if the job row were reopened
    job.refresh_from_db()
    job_billing_close(job=job)
    assert int(account_for_miner(echo_node.miner).available_wei) == paid
    assert LedgerTransaction.objects.filter(job=job, kind="settle").count() == 1
    assert conservation_holds()


def test_after_failover_only_the_node_that_finished_is_paid(alice, alice_api, echo_node):
    dead = factories.node(models=("echo",))
    job = Job.objects.get(public_id=submit(alice_api).json()["job_id"])
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, node=dead)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED, node=None)  # failed over
    job.refresh_from_db()
    complete(job, echo_node, duration_ms=1000)
    assert int(account_for_miner(echo_node.miner).available_wei) > 0
    assert int(account_for_miner(dead.miner).available_wei) == 0


def test_a_staff_refund_moves_money_with_its_reason(alice):
    before = account(alice)[0]
    adjustment = funds_refund(customer=alice, amount=777, reason="node was slow")
    assert account(alice)[0] == before + 777
    assert adjustment.transaction.memo == "node was slow" and adjustment.transaction.kind == "refund"
    assert conservation_holds()
    with pytest.raises(ValueError):
        funds_refund(customer=alice, amount=1, reason="  ")


def test_billing_endpoints_agree_with_the_job_api(alice, alice_api, bob_api, echo_node):
    job = Job.objects.get(public_id=submit(alice_api).json()["job_id"])
    complete(job, echo_node, duration_ms=1500)
    detail = alice_api.get(f"/v1/jobs/{job.public_id}").json()["billing"]
    bill = alice_api.get(f"/v1/billing/jobs/{job.public_id}").json()
    assert {k: v for k, v in bill.items() if k != "job_id"} == detail
    assert detail["status"] == "settled" and detail["policy_version"] == 1
    assert bob_api.get(f"/v1/billing/jobs/{job.public_id}").status_code == 404

    account_body = alice_api.get("/v1/billing/account").json()
    available, reserved = account(alice)
    assert account_body == {"customer_id": alice.public_id, "balance": str(available + reserved),
                            "reserved": str(reserved), "available": str(available)}

    today = timezone.now().date().isoformat()
    usage = alice_api.get(f"/v1/billing/usage?from={today}&to={today}").json()
    assert usage["days"] == [{"date": today, "jobs": 1, "completed": 1, "charged_wei": detail["charged_price_wei"],
                              "reserved_wei": "0"}]
    assert alice_api.get("/v1/billing/usage?from=2000-01-01&to=2000-01-02").json()["days"] == []
    assert alice_api.get("/v1/billing/usage?from=junk").status_code == 400


def test_a_receipt_is_served_by_its_hash_to_its_owner_only(alice, alice_api, bob_api, echo_node):
    job = complete(Job.objects.get(public_id=submit(alice_api).json()["job_id"]), echo_node, duration_ms=1000)
    body = alice_api.get(f"/v1/receipts/{job.receipt_hash}").json()
    assert body["job_id"] == job.public_id and body["node_public_key"] == echo_node.identity_public_key
    assert body["receipt"] == job.receipt["body"]
    assert bob_api.get(f"/v1/receipts/{job.receipt_hash}").status_code == 404


def test_the_treasury_adds_up(alice, alice_api, echo_node):
    for duration in (1000, 2000):
        complete(Job.objects.get(public_id=submit(alice_api).json()["job_id"]), echo_node, duration)
    end(Job.objects.get(public_id=submit(alice_api).json()["job_id"]), JobStatus.CANCELLED)
    submit(alice_api, timeout_seconds=45)  # still reserved: its whole timeout
    totals = ledger_totals()
    assert totals["customer_reservations"] == 100 + RATE * 45
    assert totals["deposits"] == factories.FUNDS
    assert conservation_holds()


def test_a_miner_reads_its_earnings_with_a_node_token(alice, alice_api, echo_node):
    from rest_framework.test import APIClient

    from marketplace.ids import secret_hash
    from nodes.models import Node

    Node.objects.filter(pk=echo_node.pk).update(token_hash=secret_hash("nodetok_test"))
    other = factories.node(models=("echo",))
    job = complete(Job.objects.get(public_id=submit(alice_api).json()["job_id"]), echo_node, duration_ms=3000)
    complete(Job.objects.get(public_id=submit(alice_api).json()["job_id"]), other, duration_ms=3000)
    body = APIClient().get("/v1/miners/earnings", HTTP_AUTHORIZATION="Bearer nodetok_test").json()
    assert body["miner_id"] == echo_node.miner.public_id and body["jobs_paid"] == 1
    assert body["total_paid_wei"] == str(job.payout_price_wei) == body["available_wei"]
    assert body["recent"][0]["job_id"] == job.public_id
    assert body["days"][0]["payout_wei"] == str(job.payout_price_wei)
    refused = APIClient().get("/v1/miners/earnings", HTTP_AUTHORIZATION="Bearer wrong")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "node_unauthorized"


def test_a_keys_own_concurrent_job_limit(alice, echo_node):
    api = factories.api_client(alice)
    api.api_key.api_key.max_concurrent_jobs = 1
    api.api_key.api_key.save()
    assert submit(api).status_code == 201
    refused = submit(api)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "concurrent_job_limit"
    assert submit(factories.api_client(alice)).status_code == 201


def test_ether_is_the_nearest_float_and_the_wei_stay_exact():
    from billing.units import estimated_cost_fields

    assert estimated_cost_fields(5 * 10**16) == {"estimated_cost": 0.05, "estimated_cost_wei": "50000000000000000"}
    huge = 10**30 + 1  # more digits than a float holds: the string keeps them
    assert estimated_cost_fields(huge)["estimated_cost_wei"] == str(huge)


def test_a_job_that_runs_all_its_max_price_pays_for_is_stopped_and_charged_exactly_the_reservation(
        alice, alice_api, echo_node):
    from datetime import timedelta

    from jobs.dispatch.attempts import attempt_timed_out
    from jobs.dispatch.scheduler import job_frame, schedule
    from jobs.services.money import job_run_seconds

    allowed = 100 + RATE * 15  # pays for 15 s of its 60 s timeout
    job = Job.objects.get(public_id=submit(alice_api, timeout_seconds=60, max_price_wei=str(allowed)).json()["job_id"])
    assert int(job.reserved_price_wei) == allowed and job_run_seconds(job) == 15
    assert schedule().assigned == 1
    job.refresh_from_db()
    assert job.deadline_at - job.assigned_at == timedelta(seconds=15)
    assert job_frame(job, echo_node)["timeout_seconds"] == 15  # the node stops it there too
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, started_at=timezone.now() - timedelta(seconds=17))
    job.refresh_from_db()
    attempt_timed_out(job=job)
    job.refresh_from_db()
    assert (job.status, job.error_code) == ("failed", "budget_exhausted")
    assert (job.billing_status, int(job.charged_price_wei)) == ("settled", allowed)
    assert account(alice)[1] == 0 and conservation_holds()
    # without a max_price_wei the reservation is the whole timeout, and so is the run
    plain = Job.objects.get(public_id=submit(alice_api, timeout_seconds=60).json()["job_id"])
    assert job_run_seconds(plain) == 60


def test_a_job_cancelled_while_it_ran_is_charged_the_time_it_ran_and_one_cancelled_before_is_free(
        alice, alice_api, echo_node):
    from datetime import timedelta

    from jobs.services.lifecycle import job_cancel

    running = start(Job.objects.get(public_id=submit(alice_api, timeout_seconds=60).json()["job_id"]), echo_node)
    Job.objects.filter(pk=running.pk).update(started_at=timezone.now() - timedelta(seconds=7))
    running.refresh_from_db()
    job_cancel(job=running)
    running.refresh_from_db()
    assert running.status == "cancelled" and running.billing_status == "settled"
    assert 100 + RATE * 7 <= int(running.charged_price_wei) < 100 + RATE * 9
    assert int(account_for_miner(echo_node.miner).available_wei) == int(running.payout_price_wei) > 0

    queued = Job.objects.get(public_id=submit(alice_api).json()["job_id"])
    job_cancel(job=queued)
    queued.refresh_from_db()
    assert (queued.billing_status, int(queued.charged_price_wei)) == ("released", 0)
    assert account(alice)[1] == 0 and conservation_holds()


def test_a_node_is_not_paid_for_more_time_than_it_has_had_the_job(alice, alice_api, echo_node):
    from datetime import timedelta

    job = Job.objects.get(public_id=submit(alice_api, timeout_seconds=600).json()["job_id"])
    Job.objects.filter(pk=job.pk).update(assigned_at=timezone.now() - timedelta(seconds=5))
    job.refresh_from_db()
    job = complete(job, echo_node, duration_ms=500_000)  # it signs 500 s after having it for 5
    assert 100 + RATE * 5 <= int(job.charged_price_wei) <= 100 + RATE * 7
    assert conservation_holds()


def test_each_money_step_is_one_statement_on_postgresql(alice, alice_api, echo_node):
    """A reservation and a settlement claim their posting key, move every row and write the
    entries in one statement: no round trip between claiming the key and holding the rows."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from billing.exceptions import AlreadyPosted
    from billing.ledger import month_of
    from billing.services import funds_close, funds_reserve, settlement_price

    if connection.vendor != "postgresql":
        pytest.skip("SQLite moves each row by compare-and-swap")
    account_for_miner(echo_node.miner)  # the miner's row exists, as it does after its first payout
    platform_account()
    key = alice_api.api_key.api_key
    month = month_of(timezone.now())
    # the key's spend row is made by its first reservation: the steady state is measured
    funds_reserve(customer=alice, api_key=key, amount=7, posting_key="reserve:first", month=month)
    before = account(alice)
    with CaptureQueriesContext(connection) as reserving:
        funds_reserve(customer=alice, api_key=key, amount=5000, posting_key="reserve:one-statement", month=month)
    settlement = settlement_price(reserved_wei=5000, duration_ms=1000, policy_version=None, model="echo",
                                  gpu_type="cpu", gpu_count=0, priority="normal")
    with CaptureQueriesContext(connection) as settling:
        funds_close(settlement=settlement, customer_id=alice.pk, api_key_id=key.pk, miner_id=echo_node.miner_id,
                    month=month, posting_key="close:one-statement")
    assert (len(reserving.captured_queries), len(settling.captured_queries)) == (1, 1)
    assert account(alice) == (before[0] - settlement.charged_wei, before[1])
    assert int(account_for_miner(echo_node.miner).available_wei) == settlement.payout_wei
    # a used key moves nothing, and says so
    with pytest.raises(AlreadyPosted):
        funds_close(settlement=settlement, customer_id=alice.pk, api_key_id=key.pk, miner_id=echo_node.miner_id,
                    month=month, posting_key="close:one-statement")
    assert account(alice) == (before[0] - settlement.charged_wei, before[1])
    assert LedgerTransaction.objects.filter(key__in=["reserve:one-statement", "close:one-statement"]).count() == 2
    assert conservation_holds()
