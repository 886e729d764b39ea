"""Delegated subscriptions in-process: the signature (checked against the Infernet client's own
signing code), the schedule, distinct nodes per interval, and delivery."""
import time
from datetime import datetime, timezone as dt_timezone

import pytest
from eth_account import Account
from infernet_client.chain.subscription import Subscription

from jobs.gateway.errors import InfernetError
from jobs.models import DelegatedSubscription, Job, JobStatus, SubscriptionDelivery
from jobs.services.lifecycle import job_transition
from jobs.subscriptions.services import containers_hash, delegated_subscription_create, subscriptions_run_due
from marketplace.authentication import CustomerPrincipal
from tests import factories

pytestmark = pytest.mark.django_db

ZERO = "0x0000000000000000000000000000000000000000"
CHAIN_ID, COORDINATOR = 31337, "0x663F3ad617193148711d28f5334eE4Ed07016602"


@pytest.fixture(autouse=True)
def chain(settings):
    settings.INFERNET_CHAIN_ID, settings.INFERNET_COORDINATOR_ADDRESS = CHAIN_ID, COORDINATOR


def signed_request(account, *, active_at, period=60, frequency=3, redundancy=2, expiry=None, nonce=1,
                   containers=("echo",), signer=None, chain_id=CHAIN_ID):
    """Signed with the published infernet-client's own typed data: an independent implementation."""
    subscription = Subscription(owner=account.address, active_at=active_at, period=period, frequency=frequency,
                                redundancy=redundancy, containers=list(containers), lazy=False, verifier=ZERO,
                                payment_amount=0, payment_token=ZERO, wallet=ZERO)
    expiry = expiry or int(time.time()) + 600
    typed = subscription.get_delegate_subscription_typed_data(nonce, expiry, chain_id, COORDINATOR)
    signed = Account.sign_message(typed, (signer or account).key)
    return {"subscription": subscription.serialized, "data": {"reading": 1},
            "signature": {"nonce": nonce, "expiry": expiry, "v": signed.v, "r": signed.r, "s": signed.s}}


@pytest.fixture
def principal(alice):
    return CustomerPrincipal(customer=alice, api_key=factories.api_client(alice).api_key.api_key)


def test_our_container_hash_is_infernets():
    subscription = Subscription(owner=ZERO, active_at=0, period=0, frequency=1, redundancy=1,
                                containers=["tokens", "echo"], lazy=False, verifier=ZERO, payment_amount=0,
                                payment_token=ZERO, wallet=ZERO)
    assert containers_hash(["tokens", "echo"]) == subscription.serialized["containers"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"expiry": 1}, "Signature expired"),
        ({"signer": "other"}, "Invalid signature"),
        ({"chain_id": 1}, "Invalid signature"),  # signed for another chain
        ({"containers": ("no-such",)}, "Container not supported"),
    ],
)
def test_a_bad_subscription_is_refused(principal, echo_node, change, message):
    account = Account.create()
    if change.get("signer") == "other":
        change = {"signer": Account.create()}
    with pytest.raises(InfernetError) as refused:
        delegated_subscription_create(principal=principal, body=signed_request(account, active_at=0, **change))
    assert refused.value.error.startswith(message) and refused.value.status == 400
    assert not DelegatedSubscription.objects.exists()


def test_each_interval_runs_once_on_distinct_nodes_and_each_result_is_delivered(
    principal, django_capture_on_commit_callbacks
):
    nodes = [factories.node(models=("echo",)) for _ in range(3)]
    start = int(time.time()) + 3600  # not yet active: nothing runs on creation
    subscription = delegated_subscription_create(
        principal=principal, body=signed_request(Account.create(), active_at=start, period=60, frequency=3))
    assert subscriptions_run_due() == 0 and not Job.objects.exists()
    at = lambda seconds: datetime.fromtimestamp(start + seconds, tz=dt_timezone.utc)  # noqa: E731
    for interval, moment in ((1, 0), (2, 60), (3, 120)):
        assert subscriptions_run_due(now=at(moment)) == 1
        assert subscriptions_run_due(now=at(moment)) == 0, "a due interval runs once"
        jobs = list(Job.objects.filter(subscription=subscription, subscription_interval=interval))
        assert len(jobs) == 2 and len({j.pinned_node_id for j in jobs}) == 2
        assert all(j.containers == ["echo"] and j.input == {"reading": 1} and j.billing_status == "reserved"
                   for j in jobs)
    subscription.refresh_from_db()
    assert subscription.status == DelegatedSubscription.Status.COMPLETED
    job = Job.objects.filter(subscription=subscription).first()
    with django_capture_on_commit_callbacks(execute=True):
        job_transition(job=job, expected=JobStatus.QUEUED, new_status=JobStatus.COMPLETED, node=job.pinned_node,
                       result={"ok": True})
    (delivery,) = SubscriptionDelivery.objects.all()
    assert (delivery.job, delivery.interval, delivery.node) == (job, job.subscription_interval, job.pinned_node)
    assert {n.pk for n in nodes} >= set(Job.objects.values_list("pinned_node", flat=True))


def test_the_same_signed_request_is_one_subscription(principal, echo_node):
    body = signed_request(Account.create(), active_at=int(time.time()) + 3600)
    first = delegated_subscription_create(principal=principal, body=body)
    assert delegated_subscription_create(principal=principal, body=body) == first
    assert DelegatedSubscription.objects.count() == 1
