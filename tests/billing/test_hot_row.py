"""Real threads on one customer's rows: reserving and closing at once neither makes nor loses wei,
and no moment has more open jobs than the limits allow (PostgreSQL: SQLite runs one writer at a time)."""
import threading

import pytest
from django.db import connection, connections

from billing.exceptions import ApiError
from billing.ledger import account_for_customer, balances_match_entries, conservation_holds
from billing.models import Account, KeySpend, LedgerTransaction
from billing.services import pricing_policy_publish, quote_job
from jobs.models import Job, JobStatus
from jobs.services.lifecycle import job_transition
from jobs.services.submit import job_create_reserved
from marketplace.authentication import CustomerPrincipal
from marketplace.services import api_key_create
from tests import factories

THREADS, ROUNDS, CUSTOMER_LIMIT, KEY_LIMIT = 12, 12, 5, 2


@pytest.mark.django_db(transaction=True)
def test_threads_reserving_and_settling_on_one_customer_conserve_wei_and_keep_the_limits():
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers are a PostgreSQL test (SQLite runs one writer at a time)")
    pricing_policy_publish(gpu_rates_wei={"cpu": "1000"}, priority_multipliers_bps={}, default_expected_seconds=2,
                           platform_fee_bps=1500)
    node = factories.node(models=("echo",))
    quote = quote_job(model="echo", gpu_type="", gpu_count=0, priority="normal", expected_seconds=2,
                      timeout_seconds=2)
    funds = quote.price_wei * 40  # runs out part way: some reservations are refused for money too
    customer = factories.customer("hot", funds=funds, max_concurrent_jobs=CUSTOMER_LIMIT)
    narrow = api_key_create(customer=customer).api_key
    narrow.max_concurrent_jobs = KEY_LIMIT
    narrow.save()
    principals = [CustomerPrincipal(customer, narrow)] + [
        CustomerPrincipal(customer, api_key_create(customer=customer).api_key) for _ in range(2)]

    lock = threading.Lock()
    outcomes: dict[str, int] = {}
    held = {"customer": 0, "narrow": 0, "most": 0, "narrow_most": 0}
    stop = threading.Event()
    seen_open: list[int] = []
    barrier = threading.Barrier(THREADS)
    crashed: list[str] = []

    def note(outcome: str) -> None:
        with lock:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

    def hold(principal, by: int) -> None:
        # counted after the reservation committed and before its close begins: never above the truth
        with lock:
            held["customer"] += by
            held["most"] = max(held["most"], held["customer"])
            if principal.api_key == narrow:
                held["narrow"] += by
                held["narrow_most"] = max(held["narrow_most"], held["narrow"])

    def work(index: int) -> None:
        principal = principals[index % len(principals)]
        try:
            barrier.wait()
            for round_ in range(ROUNDS):
                try:
                    job = job_create_reserved(principal=principal, quote=quote,
                                              fields=dict(model="echo", input=[index, round_]))
                except ApiError as error:
                    note(error.code)
                    continue
                note("reserved")
                hold(principal, 1)
                Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, node=node)
                job.status, job.node = JobStatus.RUNNING, node
                hold(principal, -1)
                if round_ % 3 == 2:  # a failure on the node's side: released
                    job_transition(job=job, expected=JobStatus.RUNNING, new_status=JobStatus.FAILED, reason="test")
                else:
                    receipt = {"body": {"duration_ms": str(700 + index)}, "hash": f"h{job.pk}", "signature": "s"}
                    job_transition(job=job, expected=JobStatus.RUNNING, new_status=JobStatus.COMPLETED, reason="test",
                                   receipt=receipt, receipt_verified=True, receipt_hash=receipt["hash"])
        except Exception as exc:  # noqa: BLE001 - a thread that dies fails the test, with its reason
            crashed.append(repr(exc))
            raise
        finally:
            connections.close_all()

    def watch() -> None:
        # what any committed moment shows: never more open bills than the customer's limit
        try:
            while not stop.is_set():
                seen_open.append(Job.objects.filter(customer=customer, billing_status="reserved").count())
        finally:
            connections.close_all()

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    stop.set()
    watcher.join(timeout=30)

    assert not any(thread.is_alive() for thread in threads) and not crashed, crashed
    assert outcomes.get("reserved", 0) >= 20, outcomes
    assert set(outcomes) <= {"reserved", "concurrent_job_limit", "insufficient_balance"}, outcomes
    assert outcomes.get("concurrent_job_limit", 0) > 0, outcomes  # the limit was reached, and held
    assert max(seen_open) <= CUSTOMER_LIMIT and held["most"] <= CUSTOMER_LIMIT, (seen_open, held)
    assert held["narrow_most"] <= KEY_LIMIT, held

    jobs = list(Job.objects.filter(customer=customer))
    assert len(jobs) == outcomes["reserved"]
    assert all(job.billing_status in ("settled", "released") for job in jobs)
    charged = sum(int(job.charged_price_wei) for job in jobs)
    account = account_for_customer(customer)
    assert (int(account.available_wei), int(account.reserved_wei)) == (funds - charged, 0)
    assert account.active_jobs == 0
    assert {row.active_jobs for row in KeySpend.objects.filter(api_key__customer=customer)} == {0}
    assert sum(int(row.spent_wei) for row in KeySpend.objects.filter(api_key__customer=customer)) == charged
    assert int(account.month_spent_wei) == charged
    miner = Account.objects.get(miner=node.miner)
    platform = Account.objects.get(kind="platform")
    assert int(miner.available_wei) + int(platform.available_wei) == charged
    assert int(miner.available_wei) == sum(int(job.payout_price_wei) for job in jobs)
    for job in jobs:
        assert LedgerTransaction.objects.filter(job=job, kind__in=["settle", "release"]).count() == 1
    assert conservation_holds() and balances_match_entries()
