"""API keys are looked up once per cache period, counted in one trip, and served without Redis.

Runs on the embedded default (an in-process cache) and, where REDIS_URL is set, on Redis.
"""
from __future__ import annotations

import logging
import os
import socket

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.redis import RedisCache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from marketplace import shared_cache
from marketplace.ids import secret_hash
from marketplace.models import ApiKey
from marketplace.selectors import api_key_cache_key
from marketplace.services import api_key_create, api_key_revoke
from marketplace.throttles import rate_limit_wait

pytestmark = pytest.mark.django_db


def key_client(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def apikey_selects(queries) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("SELECT") and "marketplace_apikey" in q["sql"]]


def all_cache_entries() -> dict:
    cache = caches[DEFAULT_CACHE_ALIAS]
    if isinstance(cache, RedisCache):
        client = cache._cache.get_client()
        prefix = cache.make_and_validate_key("")
        return {key.decode(): client.dump(key) or b"" for key in client.scan_iter(match=f"{prefix}*")}
    return {key: value for key, value in cache._cache.items()}  # LocMemCache: key -> pickled value


@pytest.fixture(autouse=True)
def one_window(monkeypatch):
    """Rate limits count in fixed minutes and hours: a test that crossed a minute's end would
    see its count start again. Each test here runs at one instant in the middle of a minute."""
    import time
    import types

    from marketplace import throttles

    middle = (time.time() // 60) * 60 + 30
    monkeypatch.setattr(throttles, "time", types.SimpleNamespace(time=lambda: middle))


@pytest.fixture
def staff(client):
    get_user_model().objects.create_superuser("root", "root@example.invalid", "pw")
    client.login(username="root", password="pw")
    return client


def test_a_keys_second_request_is_authenticated_without_reading_the_key_again(alice):
    issued = api_key_create(customer=alice)
    api = key_client(issued.secret)
    assert api.get("/v1/billing/account").status_code == 200

    with CaptureQueriesContext(connection) as queries:
        assert api.get("/v1/billing/account").status_code == 200

    assert apikey_selects(queries.captured_queries) == []


def test_the_cache_holds_the_keys_hash_never_the_key(alice):
    issued = api_key_create(customer=alice)
    assert key_client(issued.secret).get("/v1/billing/account").status_code == 200

    entries = all_cache_entries()
    assert any(key.endswith(api_key_cache_key(secret_hash(issued.secret))) for key in entries)
    for key, value in entries.items():
        assert issued.secret not in key
        assert issued.secret.encode() not in value


def test_a_key_revoked_by_staff_is_refused_on_its_next_request(staff, alice, bob):
    alices, bobs = api_key_create(customer=alice), api_key_create(customer=bob)
    alice_api, bob_api = key_client(alices.secret), key_client(bobs.secret)
    assert alice_api.get("/v1/billing/account").status_code == 200  # now cached
    assert bob_api.get("/v1/billing/account").status_code == 200

    response = staff.post("/admin/marketplace/apikey/", {
        "action": "revoke", "_selected_action": [alices.api_key.pk],
    })

    assert response.status_code == 302, response.content
    refused = alice_api.get("/v1/billing/account")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    assert bob_api.get("/v1/billing/account").status_code == 200


def test_a_revoked_key_is_refused_at_once_though_it_was_cached(alice):
    issued = api_key_create(customer=alice)
    api = key_client(issued.secret)
    assert api.get("/v1/jobs").status_code == 200

    api_key_revoke(api_key=issued.api_key)

    assert api.get("/v1/jobs").status_code == 401


def test_a_staff_change_of_a_customers_limit_counts_from_the_next_request(staff, alice):
    issued = api_key_create(customer=alice)
    api = key_client(issued.secret)
    assert [api.get("/v1/jobs").status_code for _ in range(2)] == [200, 200]

    response = staff.post(f"/admin/marketplace/customer/{alice.pk}/change/", {
        "name": alice.name, "rate_limit_per_minute": "2", "rate_limit_per_hour": "50",
        "api_keys-TOTAL_FORMS": "0", "api_keys-INITIAL_FORMS": "0",
    })

    assert response.status_code == 302, response.content
    assert api.get("/v1/jobs").status_code == 429


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens once the probe closes


def test_with_the_cache_unreachable_the_api_still_answers_and_says_why_in_the_log(alice, settings, caplog, monkeypatch):
    issued = api_key_create(customer=alice)
    settings.CACHES = {
        "default": {
            "BACKEND": "marketplace.redis_cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 1.0},
        }
    }
    monkeypatch.setattr(shared_cache, "_warned_at", 0.0)
    api = key_client(issued.secret)

    with caplog.at_level(logging.WARNING, logger="marketplace.shared_cache"):
        answers = [api.get("/v1/billing/account") for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 200]
    assert answers[0].json()["customer_id"] == alice.public_id
    warnings = [r for r in caplog.records if r.name == "marketplace.shared_cache"]
    assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()
    # revocation still holds: the key is read from the database while the cache is away
    api_key_revoke(api_key=issued.api_key)
    assert api.get("/v1/billing/account").status_code == 401


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="the one-trip count is Redis's (REDIS_URL)")
def test_on_redis_both_windows_are_counted_in_one_round_trip(alice, monkeypatch):
    import redis

    api_key = api_key_create(customer=alice).api_key
    rate_limit_wait(api_key)  # the first call may load the script into Redis
    commands = []
    original = redis.Redis.execute_command
    monkeypatch.setattr(
        redis.Redis, "execute_command", lambda self, *args, **kw: commands.append(args[0]) or original(self, *args, **kw)
    )

    assert rate_limit_wait(api_key) == 0.0

    assert commands == ["EVALSHA"]
    cache = caches[DEFAULT_CACHE_ALIAS]
    client = cache._cache.get_client()
    counters = [key for key in client.scan_iter(match=cache.make_and_validate_key(f"ratelimit:{api_key.pk}:*"))]
    assert len(counters) == 2
    assert all(int(client.get(key)) == 2 for key in counters)
    assert all(0 < client.ttl(key) <= 3600 + 5 for key in counters)


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="the Redis cache's client (REDIS_URL)")
def test_on_redis_every_cache_call_of_a_thread_shares_one_client(monkeypatch):
    import redis

    cache = caches[DEFAULT_CACHE_ALIAS]
    built = []
    original = redis.Redis.__init__

    def counting(self, *args, **kwargs):
        built.append(1)
        original(self, *args, **kwargs)

    cache.get("warm")
    monkeypatch.setattr(redis.Redis, "__init__", counting)
    cache.set("k", 1, 5)
    assert [cache.get("k") for _ in range(3)] == [1, 1, 1] and cache.add("k", 2, 5) is False
    cache.delete_many(["k"])
    assert built == [], "a redis-py client was built per call"


def test_a_gateway_batch_counts_each_item_against_the_keys_rate_limit(alice, echo_node):
    from django.test import Client

    from jobs.models import Job

    issued = api_key_create(customer=alice)
    ApiKey.objects.filter(pk=issued.api_key.pk).update(rate_limit_per_minute=5)
    items = [{"containers": ["echo"], "data": {"i": i}} for i in range(300)]
    response = Client().post(f"/infernet/{issued.secret}/api/jobs/batch", items, content_type="application/json")
    assert response.status_code == 200
    answers = response.json()
    made = [a for a in answers if "id" in a]
    assert len(made) == 5 and Job.objects.filter(customer=alice).count() == 5, "five requests a minute, not 300"
    assert all(a == {"error": "Too many requests", "params": {"retry_after": a["params"]["retry_after"]}}
               for a in answers[5:])
    later = Client().get(f"/infernet/{issued.secret}/api/jobs")
    assert later.status_code == 429, "the batch spent the key's minute"
