"""Demo data for ``runmarket``: made on first run, remembered in the var dir (mode 600).

The API key and passwords are stored hashed in the database like any other; this
file keeps the demo's own copy so that every start can print working credentials.
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import transaction

from billing.selectors import pricing_policy_current
from billing.services import funds_deposit
from marketplace.services import api_key_create, customer_get_or_create, miner_get_or_create

CREDENTIALS_FILE = "demo-credentials.json"
DEMO_FUNDS_WEI = 10**21  # 1000 ether


@transaction.atomic
def _create() -> dict:
    User = get_user_model()
    admin_password = secrets.token_urlsafe(12)
    customer_password = secrets.token_urlsafe(12)
    miner_password = secrets.token_urlsafe(12)
    if not User.objects.filter(username="admin").exists():
        User.objects.create_superuser("admin", "admin@example.invalid", admin_password)
    customer_user = User.objects.create_user("demo", password=customer_password)
    customer = customer_get_or_create(name="demo")
    customer.user = customer_user
    customer.save(update_fields=["user"])
    miner_user = User.objects.create_user("demo-miner", password=miner_password)
    miner = miner_get_or_create(name="demo-miner")
    miner.user = miner_user
    miner.save(update_fields=["user"])
    key = api_key_create(customer=customer, name="demo")
    pricing_policy_current()
    funds_deposit(customer=customer, amount=DEMO_FUNDS_WEI, reason="demo funds made by runmarket")
    return {
        "admin": {"username": "admin", "password": admin_password},
        "customer": {"username": "demo", "password": customer_password, "customer_id": customer.public_id,
                     "api_key": key.secret},
        "miner": {"username": "demo-miner", "password": miner_password, "miner_id": miner.public_id},
    }


def demo_ensure(var_dir: Path) -> dict:
    path = var_dir / CREDENTIALS_FILE
    if path.exists():
        return json.loads(path.read_text())
    credentials = _create()
    var_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(credentials, handle, indent=2)
    return credentials
