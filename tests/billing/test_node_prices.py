"""A job's bill is at the price of the node that runs it, within the policy's bounds (issue 13).

The quote is the expected run on the cheapest node that could take the job, the
reservation its whole timeout on the dearest; the scheduler gives it to the cheapest
node with a free slot, never to one its reservation does not cover, and records that
node's rate on the attempt; the charge is the node-signed time at that rate.
"""
from datetime import timedelta

import pytest
from django.utils import timezone

from billing.ledger import account_for_miner, conservation_holds
from billing.services import pricing_policy_publish
from jobs.dispatch.scheduler import schedule
from jobs.models import Job
from tests import factories
from tests.billing.helpers import complete

pytestmark = pytest.mark.django_db

CPU, H100 = 1_000, 250_000  # the policy's own rates, wei per GPU-second


@pytest.fixture(autouse=True)
def prices(db):
    pricing_policy_publish(
        gpu_rates_wei={"cpu": str(CPU), "h100": str(H100)}, priority_multipliers_bps={"normal": 10000},
        default_expected_seconds=10, platform_fee_bps=1000, minimum_charge_wei=0,
        node_price_bounds_wei={"h100": ["200000", "400000"]},
    )


def submit(api, **body):
    response = api.post("/v1/jobs", {"model": "echo", "input": "x", "timeout_seconds": 100, **body}, format="json")
    assert response.status_code == 201, response.content
    return Job.objects.get(public_id=response.json()["job_id"])


def test_the_cheaper_node_runs_the_job_and_its_price_is_the_bill(alice_api):
    cheap = factories.node(gpu_type="h100", gpu_count=1, price_per_second_wei=300_000)
    dear = factories.node(gpu_type="h100", gpu_count=1, price_per_second_wei=350_000)
    job = submit(alice_api, requirements={"gpu_type": "h100"})  # no gpu_count: still an H100's price
    assert int(job.quoted_price_wei) == 300_000 * 10, "the expected run on the cheapest"
    assert int(job.reserved_price_wei) == 350_000 * 100, "the whole timeout on the dearest"
    assert schedule().assigned == 1
    job.refresh_from_db()
    assert job.node_id == cheap.pk and int(job.rate_wei_per_second) == 300_000
    assert int(job.attempts.get().rate_wei_per_second) == 300_000, "the rate at assignment is kept on the attempt"
    # the miner changes the price while it runs: the job keeps the rate it was given at
    type(cheap).objects.filter(pk=cheap.pk).update(price_per_second_wei=390_000)
    Job.objects.filter(pk=job.pk).update(assigned_at=timezone.now() - timedelta(seconds=25))  # it ran 20 s of 25
    job.refresh_from_db()
    job = complete(job, cheap, duration_ms=20_000)
    assert int(job.charged_price_wei) == 300_000 * 20
    assert int(account_for_miner(cheap.miner).available_wei) == 300_000 * 20 * 9 // 10
    assert int(account_for_miner(dear.miner).available_wei) == 0
    assert conservation_holds()


def test_a_node_asks_within_the_policys_bounds_and_one_that_asks_nothing_charges_the_policys_rate(alice_api):
    greedy = factories.node(gpu_type="h100", gpu_count=1, price_per_second_wei=10**9)
    job = submit(alice_api, requirements={"gpu_type": "h100", "gpu_count": 1})
    assert int(job.quoted_price_wei) == 400_000 * 10, "held at the ceiling"
    schedule()
    job.refresh_from_db()
    assert (job.node_id, int(job.rate_wei_per_second)) == (greedy.pk, 400_000)

    type(greedy).objects.filter(pk=greedy.pk).update(price_per_second_wei=0)
    plain = submit(alice_api, requirements={"gpu_type": "h100", "gpu_count": 1})
    assert int(plain.quoted_price_wei) == H100 * 10
    cpu_node = factories.node(models=("tokens",))
    cpu_job = alice_api.post("/v1/jobs", {"model": "tokens", "input": {"text": "a"}}, format="json").json()
    assert int(cpu_job["estimated_cost_wei"]) == CPU * 10 and cpu_node.gpu_count == 0


def test_a_node_dearer_than_the_reservation_covers_is_not_given_the_job(alice_api):
    factories.node(gpu_type="h100", gpu_count=1, price_per_second_wei=210_000, capacity=1, online=False)
    job = submit(alice_api, requirements={"gpu_type": "h100"})
    assert int(job.rate_ceiling_wei) == 210_000
    dear = factories.node(gpu_type="h100", gpu_count=1, price_per_second_wei=390_000)  # came after the submit
    assert schedule().assigned == 0
    job.refresh_from_db()
    assert job.status == "queued" and job.node_id is None
    type(dear).objects.filter(pk=dear.pk).update(price_per_second_wei=205_000)
    assert schedule().assigned == 1


def test_a_max_price_below_the_cheapest_nodes_first_second_is_a_402_naming_its_rate(alice_api):
    factories.node(gpu_type="h100", gpu_count=1, price_per_second_wei=300_000)
    factories.node(gpu_type="h100", gpu_count=1, price_per_second_wei=220_000)
    response = alice_api.post("/v1/jobs", {"model": "echo", "input": "x", "requirements": {"gpu_type": "h100"},
                                           "max_price_wei": "219999"}, format="json")
    error = response.json()["error"]
    assert response.status_code == 402 and error["code"] == "price_above_max"
    assert error["rate_wei_per_second"] == "220000" and "220000" in error["detail"]
    assert not Job.objects.exists()


def test_with_no_node_of_its_class_yet_a_job_is_quoted_at_the_policys_rate_and_reserves_its_ceiling(alice_api):
    factories.node()  # serves echo, but has no GPU
    job = submit(alice_api, requirements={"gpu_type": "h100", "gpu_count": 1})
    assert int(job.quoted_price_wei) == H100 * 10
    assert (int(job.reserved_price_wei), int(job.rate_ceiling_wei)) == (400_000 * 100, 400_000)
    arrived = factories.node(gpu_type="h100", gpu_count=1, price_per_second_wei=400_000)
    assert schedule().assigned == 1
    job.refresh_from_db()
    assert job.node_id == arrived.pk
