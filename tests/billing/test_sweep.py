"""The sweep releases reservations that nothing else would: nothing stays held forever."""
from datetime import timedelta

import pytest
from django.utils import timezone

from billing.ledger import account_for_customer, conservation_holds
from jobs.models import Job, JobStatus
from jobs.sweeper import jobs_sweep

pytestmark = pytest.mark.django_db


def test_a_job_stuck_in_the_queue_expires_and_its_reservation_is_released(alice, alice_api, echo_node):
    before = account_for_customer(alice).available_wei
    job_id = alice_api.post("/v1/jobs", {"model": "echo", "input": 1}, format="json").json()["job_id"]
    assert account_for_customer(alice).available_wei < before
    Job.objects.filter(public_id=job_id).update(queue_deadline=timezone.now() - timedelta(seconds=1))
    jobs_sweep()
    job = Job.objects.get(public_id=job_id)
    assert job.status == JobStatus.EXPIRED and job.billing_status == "released"
    assert account_for_customer(alice).available_wei == before and conservation_holds()


def test_a_finished_job_with_an_open_bill_is_released(alice, alice_api, echo_node):
    before = account_for_customer(alice).available_wei
    job_id = alice_api.post("/v1/jobs", {"model": "echo", "input": 1}, format="json").json()["job_id"]
    Job.objects.filter(public_id=job_id).update(status=JobStatus.FAILED)  # ended behind the services' back
    jobs_sweep()
    assert Job.objects.get(public_id=job_id).billing_status == "released"
    assert account_for_customer(alice).available_wei == before and conservation_holds()


def test_a_job_whose_worker_died_is_handed_to_another(alice, alice_api, echo_node, sent_dispatches):
    job_id = alice_api.post("/v1/jobs", {"model": "echo", "input": 1}, format="json").json()["job_id"]
    job = Job.objects.get(public_id=job_id)
    sent_dispatches.clear()
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, node=echo_node, lease_owner="dead",
                                         lease_expires_at=timezone.now() - timedelta(seconds=1))
    jobs_sweep()
    assert (job.pk,) in sent_dispatches
