"""Random interleavings of everything that moves money: wei is never made or lost, nobody is paid twice."""
import itertools
from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings, strategies as st

from billing.exceptions import ApiError
from billing.ledger import account_for_customer, account_for_miner, conservation_holds
from billing.models import Account, LedgerTransaction
from billing.services import funds_deposit, pricing_policy_publish
from jobs.dispatch.attempts import attempt_timed_out
from jobs.models import Job, JobStatus
from jobs.services.lifecycle import job_cancel
from jobs.services.money import job_billing_close
from jobs.services.submit import JobSpec, job_submit
from marketplace.authentication import CustomerPrincipal
from marketplace.services import api_key_create
from tests import factories
from tests.billing.helpers import complete, end, start

pytestmark = pytest.mark.django_db

_deposits = itertools.count()
OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["deposit", "submit", "submit_capped", "cancel", "fail", "input_failure", "timeout", "expire", "complete",
                         "replay"]),
        st.integers(min_value=0, max_value=10**6),
    ),
    max_size=25,
)


def _spec(priority="normal", max_price_wei=None):
    return JobSpec(model="echo", containers=[], input="x", output_config={}, gpu_type="", gpu_count=0,
                   min_vram_gb=0, priority=priority, timeout_seconds=60, max_price_wei=max_price_wei)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS)
def test_money_is_conserved_and_nobody_is_paid_twice(operations, db):
    pricing_policy_publish(gpu_rates_wei={"cpu": "1000"}, priority_multipliers_bps={}, default_expected_seconds=3,
                           platform_fee_bps=1500, minimum_charge_wei=7)
    node = factories.node(models=("echo",))
    customers = [factories.customer(funds=0) for _ in range(2)]
    principals = [CustomerPrincipal(c, api_key_create(customer=c).api_key) for c in customers]
    for customer in customers:
        customer.max_concurrent_jobs = 1000
        customer.save()

    for index, (operation, number) in enumerate(operations):
        principal = principals[number % 2]
        jobs = list(Job.objects.filter(customer__in=customers).order_by("pk"))
        job = jobs[number % len(jobs)] if jobs else None
        try:
            if operation == "deposit":
                funds_deposit(customer=principal.customer, amount=number + 1, reason="test", key=f"dep-{next(_deposits)}")
            elif operation == "submit":
                job_submit(principal=principal, spec=_spec())
            elif operation == "submit_capped":  # its max_price_wei pays for part of its timeout
                job_submit(principal=principal, spec=_spec(max_price_wei=3000 + number % 60000))
            elif job is None:
                continue
            elif operation == "cancel":
                job_cancel(job=job)
            elif operation == "fail" and not job.is_terminal:
                end(job, JobStatus.FAILED, node=node)
            elif operation == "input_failure" and not job.is_terminal:
                complete(job, node, duration_ms=number, status=JobStatus.FAILED)  # charged
            elif operation == "timeout" and not job.is_terminal:
                start(job, node)
                Job.objects.filter(pk=job.pk).update(started_at=timezone.now() - timedelta(milliseconds=number))
                job.refresh_from_db()
                attempt_timed_out(job=job)  # charged for the time it ran, or its whole budget
            elif operation == "expire" and job.status == JobStatus.QUEUED:
                end(job, JobStatus.EXPIRED)
            elif operation == "complete" and not job.is_terminal:
                complete(job, node, duration_ms=number)
            elif operation == "replay":
                job_billing_close(job=job)
        except ApiError:
            pass  # refused (no funds, a finished job): refusing must move nothing either

        assert conservation_holds()
        for customer in customers:
            account = account_for_customer(customer)
            assert account.available_wei >= 0 and account.reserved_wei >= 0
            held = sum(int(j.reserved_price_wei) for j in Job.objects.filter(customer=customer, billing_status="reserved"))
            assert int(account.reserved_wei) == held
        paid = sum(int(j.payout_price_wei) for j in Job.objects.filter(node=node, billing_status="settled"))
        assert int(account_for_miner(node.miner).available_wei) == paid
        for job in Job.objects.filter(customer__in=customers):
            assert LedgerTransaction.objects.filter(job=job, kind__in=["settle", "release"]).count() <= 1
            if job.is_terminal:
                assert job.billing_status in ("settled", "released")
    assert Account.objects.filter(kind="external").count() <= 1
