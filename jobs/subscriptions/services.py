"""Delegated subscriptions: accept a signed one, run each interval when it falls due, deliver results.

There is no chain here. What a coordinator contract would check, this checks: the
EIP-712 signature recovers to the subscription's owner, it has not expired, and
the (owner, nonce) pair is used once. Each interval's jobs are ordinary marketplace
jobs (billed to the API key that sent the subscription), pinned to distinct nodes.
"""
from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone as dt_timezone

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from eth_abi import encode as abi_encode
from eth_utils import is_address, keccak, to_checksum_address

from billing.selectors import pricing_policy_current
from billing.services import node_rate, quote_job
from jobs.gateway.errors import InfernetError
from jobs.models import DEFAULT_TIMEOUT_SECONDS, DelegatedSubscription, Job
from jobs.selectors import model_median_seconds
from jobs.services.submit import job_create_reserved
from jobs.subscriptions.signature import delegate_subscription_signer
from marketplace.authentication import CustomerPrincipal
from marketplace.errors import ApiError
from nodes.selectors import containers_offered, node_candidates

log = logging.getLogger(__name__)

UINT32 = 2**32 - 1
MAX_CHAIN_LENGTH = 3  # chains of up to this many containers are recognised from their hash


def containers_hash(containers: list[str]) -> str:
    """What a subscription signs instead of its container ids: keccak256(abi.encode(string))."""
    return "0x" + keccak(abi_encode(["string"], [",".join(containers)])).hex()


def containers_from_hash(hashed: str) -> list[str] | None:
    """The offered chain of containers whose hash this is, if any."""
    offered = sorted(containers_offered())
    for length in range(1, MAX_CHAIN_LENGTH + 1):
        for chain in itertools.permutations(offered, length):
            if containers_hash(list(chain)) == hashed.lower():
                return list(chain)
    return None


@dataclass(frozen=True)
class SignedSubscription:
    subscription: dict
    signature: dict
    data: dict


def _uint(value, name: str, maximum: int = UINT32, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise InfernetError(f"{name} must be a whole number from {minimum} to {maximum}", field=name)
    return value


def _address(value, name: str) -> str:
    if not isinstance(value, str) or not is_address(value):
        raise InfernetError(f"{name} must be an address", field=name)
    return value


def parse_delegated_subscription(body) -> SignedSubscription:
    if not isinstance(body, dict) or set(body) - {"subscription", "signature", "data"}:
        raise InfernetError("A delegated subscription is {subscription, signature, data}")
    sub, sig, data = body.get("subscription"), body.get("signature"), body.get("data", {})
    if not isinstance(sub, dict) or not isinstance(sig, dict) or not isinstance(data, dict):
        raise InfernetError("subscription and signature must be objects, and data an object")
    for name in ("owner", "verifier", "payment_token", "wallet"):
        _address(sub.get(name), f"subscription.{name}")
    for name in ("active_at", "period"):
        _uint(sub.get(name), f"subscription.{name}")
    _uint(sub.get("frequency"), "subscription.frequency", minimum=1)
    _uint(sub.get("redundancy"), "subscription.redundancy", maximum=2**16 - 1, minimum=1)
    _uint(sub.get("payment_amount"), "subscription.payment_amount", maximum=2**256 - 1)
    if not isinstance(sub.get("lazy"), bool):
        raise InfernetError("subscription.lazy must be a boolean", field="subscription.lazy")
    hashed = sub.get("containers")
    if not isinstance(hashed, str) or len(hashed) != 66 or not hashed.startswith("0x"):
        raise InfernetError("subscription.containers must be the 32-byte container hash, 0x-prefixed hex")
    if sub["frequency"] > 1 and sub["period"] == 0:
        raise InfernetError("a subscription with frequency above 1 needs a period")
    _uint(sig.get("nonce"), "signature.nonce")
    _uint(sig.get("expiry"), "signature.expiry")
    _uint(sig.get("v"), "signature.v", maximum=255)
    _uint(sig.get("r"), "signature.r", maximum=2**256 - 1)
    _uint(sig.get("s"), "signature.s", maximum=2**256 - 1)
    return SignedSubscription(subscription=sub, signature=sig, data=data)


def delegated_subscription_create(*, principal: CustomerPrincipal, body) -> DelegatedSubscription:
    signed = parse_delegated_subscription(body)
    sub, sig = signed.subscription, signed.signature
    if sig["expiry"] <= time.time():
        raise InfernetError("Signature expired", expiry=sig["expiry"])
    try:
        signer = delegate_subscription_signer(
            subscription=sub, signature=sig, chain_id=settings.INFERNET_CHAIN_ID,
            coordinator=settings.INFERNET_COORDINATOR_ADDRESS,
        )
    except (ValueError, TypeError) as exc:
        raise InfernetError("Invalid signature", detail=str(exc)) from None
    owner = to_checksum_address(sub["owner"])
    if signer != owner:
        raise InfernetError("Invalid signature: it was not made by the subscription's owner", signer=signer)
    containers = containers_from_hash(sub["containers"])
    if containers is None:
        raise InfernetError("Container not supported", containers=sub["containers"])
    existing = DelegatedSubscription.objects.filter(owner=owner, nonce=sig["nonce"]).first()
    if existing is not None:
        return existing  # the same signed request again: it already runs
    first = datetime.fromtimestamp(sub["active_at"], tz=dt_timezone.utc)
    try:
        with transaction.atomic():
            subscription = DelegatedSubscription.objects.create(
                customer=principal.customer, api_key=principal.api_key, owner=owner, nonce=sig["nonce"],
                expiry=sig["expiry"], containers=containers, containers_hash=sub["containers"].lower(),
                data=signed.data, active_at=sub["active_at"], period=sub["period"], frequency=sub["frequency"],
                redundancy=sub["redundancy"], next_run_at=first,
                terms={k: str(sub[k]) for k in ("lazy", "verifier", "payment_amount", "payment_token", "wallet")},
            )
    except IntegrityError:
        return DelegatedSubscription.objects.get(owner=owner, nonce=sig["nonce"])
    if first <= timezone.now():
        transaction.on_commit(lambda: subscriptions_run_due(only=subscription.pk))
    return subscription


def _interval_jobs(subscription: DelegatedSubscription, interval: int) -> tuple[int, str]:
    """Queue one job per distinct node for ``interval``; (jobs made, why fewer than redundancy)."""
    nodes = node_candidates(model="", containers=subscription.containers, gpu_type="", gpu_count=0,
                            min_vram_gb=0, exclude=[])[: subscription.redundancy]
    if not nodes:
        return 0, "no online node runs these containers"
    principal = CustomerPrincipal(customer=subscription.customer, api_key=subscription.api_key)
    policy = pricing_policy_current()
    expected = model_median_seconds(model="", default=policy.default_expected_seconds)
    made = 0
    for node in nodes:
        # each interval's job runs on its own node: quoted and reserved at that node's price
        rate = node_rate(policy=policy, gpu_type=node.gpu_type, gpu_count=node.gpu_count,
                         asked_wei=node.price_per_second_wei)
        quote = quote_job(model="", gpu_type="", gpu_count=0, priority="normal", expected_seconds=expected,
                          timeout_seconds=DEFAULT_TIMEOUT_SECONDS, policy=policy, rates=(rate, rate))
        try:
            job_create_reserved(principal=principal, quote=quote, fields=dict(
                containers=subscription.containers, input=subscription.data, pinned_node=node,
                subscription=subscription, subscription_interval=interval, estimated_time_seconds=expected,
            ))
            made += 1
        except ApiError as error:  # funds or quotas: this node's response is skipped, the schedule goes on
            return made, error.detail
    reason = "" if made == subscription.redundancy else f"only {made} node(s) online for {subscription.redundancy}"
    return made, reason


def subscriptions_run_due(*, only: int | None = None, now=None) -> int:
    """Run every interval that has fallen due; several workers at once run each interval once."""
    now = now or timezone.now()
    ran = 0
    due = DelegatedSubscription.objects.filter(status=DelegatedSubscription.Status.ACTIVE, next_run_at__lte=now)
    if only is not None:
        due = due.filter(pk=only)
    for pk in list(due.values_list("pk", flat=True)[:100]):
        with transaction.atomic():
            locked = DelegatedSubscription.objects.filter(pk=pk, next_run_at__lte=now,
                                                          status=DelegatedSubscription.Status.ACTIVE)
            if connection.features.has_select_for_update_skip_locked:
                # lock the subscription's row only (its api key is an outer join)
                locked = locked.select_for_update(skip_locked=True, of=("self",))
            subscription = locked.select_related("customer", "api_key").first()
            if subscription is None:
                continue  # another worker has it
            interval = subscription.next_interval
            if not Job.objects.filter(subscription=subscription, subscription_interval=interval).exists():
                _, reason = _interval_jobs(subscription, interval)
                subscription.last_error = reason[:300]
            subscription.next_interval = interval + 1
            if subscription.next_interval > subscription.frequency:
                subscription.status = DelegatedSubscription.Status.COMPLETED
            else:
                subscription.next_run_at = datetime.fromtimestamp(
                    subscription.active_at + interval * subscription.period, tz=dt_timezone.utc
                )
            subscription.save(update_fields=["next_interval", "next_run_at", "status", "last_error"])
            ran += 1
    return ran

