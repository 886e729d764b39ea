"""Real concurrency on PostgreSQL: 200 submits at once against a balance that covers 50."""
import threading

import pytest
from django.db import connection, connections

from billing.ledger import account_for_customer, conservation_holds
from billing.services import pricing_policy_publish
from jobs.models import Job
from tests import factories


@pytest.mark.django_db(transaction=True)
def test_two_hundred_submits_at_once_against_a_balance_for_fifty():
    if connection.vendor != "postgresql":
        pytest.skip("real row-lock concurrency is a PostgreSQL test (CI's second run)")
    pricing_policy_publish(gpu_rates_wei={"cpu": "1000"}, priority_multipliers_bps={}, default_expected_seconds=2)
    factories.node(models=("echo",))
    quote = 1000 * 2  # and the reservation: each job's whole 2 s timeout
    customer = factories.customer("crowd", funds=quote * 50, max_concurrent_jobs=1000)
    keys = [factories.api_client(customer) for _ in range(4)]
    barrier = threading.Barrier(200)
    statuses = []
    lock = threading.Lock()

    def submit(index: int) -> None:
        try:
            barrier.wait()
            response = keys[index % 4].post("/v1/jobs", {"model": "echo", "input": index, "timeout_seconds": 2},
                                           format="json")
            with lock:
                statuses.append(response.status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert sorted(set(statuses)) == [201, 402], statuses
    assert statuses.count(201) == 50 and statuses.count(402) == 150
    assert Job.objects.filter(customer=customer).count() == 50
    account = account_for_customer(customer)
    assert (int(account.available_wei), int(account.reserved_wei)) == (0, quote * 50)
    assert conservation_holds()
