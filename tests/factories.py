"""Small builders for the database state tests start from."""
from __future__ import annotations

import itertools
import secrets
from datetime import timedelta

from django.utils import timezone
from rest_framework.test import APIClient

from marketplace.ids import secret_hash
from marketplace.models import Customer, Miner
from marketplace.services import api_key_create
from nodes.models import Node

_counter = itertools.count(1)


FUNDS = 10**21  # 1000 ether in wei: plenty for any test job


def customer(name: str | None = None, funds: int = FUNDS, **fields) -> Customer:
    """A customer, funded unless ``funds=0``."""
    from billing.services import funds_deposit

    created = Customer.objects.create(name=name or f"customer-{next(_counter)}", **fields)
    if funds:
        funds_deposit(customer=created, amount=funds, reason="test funds")
    return created


def miner(name: str | None = None) -> Miner:
    return Miner.objects.create(name=name or f"miner-{next(_counter)}")


def api_client(for_customer: Customer) -> APIClient:
    client = APIClient()
    issued = api_key_create(customer=for_customer)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    client.api_key = issued
    return client


def node(*, models=("echo",), gpu_type="", gpu_count=0, vram_gb=0.0, online=True, capacity=4, owner=None,
         url="", **fields) -> Node:
    """A node row; ``online`` gives it a fresh heartbeat and an open socket (a channel nobody reads)."""
    n = next(_counter)
    return Node.objects.create(
        miner=owner or miner(),
        name=f"node-{n}",
        url=url,
        identity_public_key=fields.pop("identity_public_key", secrets.token_urlsafe(32)[:43]),
        token_hash=secret_hash(secrets.token_hex(8)),
        approval=Node.Approval.APPROVED,
        containers=list(models),
        model_map={m: m for m in models},
        gpu_type=gpu_type,
        gpu_count=gpu_count,
        vram_gb=vram_gb,
        capacity=capacity,
        last_heartbeat_at=timezone.now() if online else timezone.now() - timedelta(hours=1),
        channel_name=fields.pop("channel_name", f"test.node-{n}" if online else ""),
        **fields,
    )
