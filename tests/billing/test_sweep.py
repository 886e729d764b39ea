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


def test_a_job_on_a_node_gone_silent_is_taken_back_and_its_money_stays_held(alice, alice_api, echo_node):
    from jobs.models import JobAttempt
    from nodes.models import Node

    job_id = alice_api.post("/v1/jobs", {"model": "echo", "input": 1}, format="json").json()["job_id"]
    job = Job.objects.get(public_id=job_id)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, node=echo_node, attempt_count=1,
                                         assigned_at=timezone.now())
    JobAttempt.objects.create(job=job, node=echo_node, number=1)
    Node.objects.filter(pk=echo_node.pk).update(last_heartbeat_at=timezone.now() - timedelta(hours=1))
    jobs_sweep()
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.excluded_nodes == [echo_node.public_id]
    assert job.attempts.get().status == JobAttempt.Status.LOST and job.billing_status == "reserved"
    assert Node.objects.get(pk=echo_node.pk).channel_name == "" and conservation_holds()
