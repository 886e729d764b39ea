"""The live bus: what the live streams and the node sockets hear, in order, and what happens when
Redis goes away. The in-process bus is tested everywhere; the Redis bus where REDIS_URL is set
(CI's second run)."""
import asyncio
import threading
import time

import pytest
import requests
from django.conf import settings

from marketplace import live_bus
from tests.support.agent import free_port

needs_redis = pytest.mark.skipif(not settings.REDIS_URL, reason="the Redis bus needs REDIS_URL (CI's second run)")


def _redis_bus(tag: str) -> live_bus._RedisBus:
    return live_bus._RedisBus(settings.REDIS_URL, f"{settings.LIVE_BUS_PREFIX}-test-{tag}:")


BUSES = [
    pytest.param(lambda: live_bus._LocalBus(), id="in-process"),
    pytest.param(lambda: _redis_bus("any"), id="redis", marks=needs_redis),
]


async def _next(subscription, timeout: float = 5.0) -> dict:
    return await asyncio.wait_for(subscription.get(), timeout)


@pytest.mark.parametrize("make_bus", BUSES)
def test_messages_published_from_other_threads_arrive_in_order(make_bus):
    bus = make_bus()

    async def scenario():
        subscription = await bus.subscribe("job.one")
        publisher = threading.Thread(target=lambda: [bus.publish("job.one", {"n": n}) for n in range(1000)])
        publisher.start()
        received = [(await _next(subscription))["n"] for _ in range(1000)]
        publisher.join()
        await subscription.close()
        return received

    assert asyncio.run(scenario()) == list(range(1000))


@pytest.mark.parametrize("make_bus", BUSES)
def test_each_subscriber_hears_its_topic_only_and_nothing_after_it_leaves(make_bus):
    bus = make_bus()

    async def scenario():
        first, second = await bus.subscribe("job.a"), await bus.subscribe("job.a")
        other = await bus.subscribe("job.b")
        bus.publish("job.a", {"to": "a"})
        assert await _next(first) == {"to": "a"} and await _next(second) == {"to": "a"}
        await first.close()
        bus.publish("job.a", {"to": "a", "again": True})
        bus.publish("job.b", {"to": "b"})
        # the second subscriber of the topic still hears it after the first left
        assert await _next(second) == {"to": "a", "again": True}
        assert await _next(other) == {"to": "b"}
        with pytest.raises(asyncio.TimeoutError):
            await _next(first, timeout=0.3)
        await second.close()
        await other.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("make_bus", BUSES)
def test_a_subscriber_far_behind_is_told_to_resync_instead_of_growing_without_bound(make_bus, monkeypatch):
    monkeypatch.setattr(live_bus, "MAX_PENDING", 50)
    bus = make_bus()

    async def scenario():
        subscription = await bus.subscribe("job.slow")
        # a prompt subscriber beside it: once it has the last message, the slow one has been handed
        # all 120 without reading any (over Redis they arrive in batches, not at once)
        prompt = await bus.subscribe("job.slow")
        for n in range(120):
            bus.publish("job.slow", {"n": n})
        last = None
        while last != {"n": 119}:
            last = await _next(prompt)
        await prompt.close()
        seen = []
        while not seen or seen[-1] != {"n": 119}:
            seen.append(await _next(subscription))
        await subscription.close()
        return seen

    seen = asyncio.run(scenario())
    assert live_bus.RESYNC in seen and len(seen) <= 51


def _named_clients(name: str) -> list[dict]:
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        return [c for c in client.client_list(_type="pubsub") if c.get("name") == name]
    finally:
        client.close()


@needs_redis
def test_five_hundred_open_streams_share_one_redis_connection():
    bus = _redis_bus("many")

    async def scenario():
        subscriptions = [await bus.subscribe(f"job.{n}") for n in range(500)]
        connections = len(_named_clients(bus.client_name))
        bus.publish("job.499", {"last": True})
        assert await _next(subscriptions[-1]) == {"last": True}
        for subscription in subscriptions:
            await subscription.close()
        return connections

    assert asyncio.run(scenario()) == 1


@needs_redis
def test_a_dropped_redis_connection_tells_subscribers_to_resync_and_subscribes_again():
    import redis

    bus = _redis_bus("drop")

    async def scenario():
        subscription = await bus.subscribe("job.kept")
        (connection,) = _named_clients(bus.client_name)
        admin = redis.Redis.from_url(settings.REDIS_URL)
        admin.client_kill_filter(_id=connection["id"])
        admin.close()
        assert await _next(subscription) == live_bus.RESYNC
        # subscribed again on the new connection: what is published now arrives
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            bus.publish("job.kept", {"after": "reconnect"})
            try:
                return await _next(subscription, timeout=0.2)
            except asyncio.TimeoutError:
                continue
        return None

    assert asyncio.run(scenario()) == {"after": "reconnect"}


def test_an_unreachable_redis_refuses_a_subscription_in_time_and_never_blocks_a_publisher():
    bus = live_bus._RedisBus(f"redis://127.0.0.1:{free_port()}/0", "nobody:")

    async def scenario():
        started = time.monotonic()
        with pytest.raises(live_bus.LiveBusUnavailable):
            await bus.subscribe("job.x")
        waited = time.monotonic() - started
        # with nobody subscribed, the loop's hub stops retrying instead of trying forever
        await asyncio.wait_for(bus._hubs[asyncio.get_running_loop()].task, 5)
        return waited

    started = time.monotonic()
    for n in range(100):
        bus.publish("job.x", {"n": n})
    assert time.monotonic() - started < 1.0
    assert asyncio.run(scenario()) < live_bus.SUBSCRIBE_TIMEOUT_SECONDS + 2


@pytest.mark.django_db(transaction=True)
def test_a_stream_without_the_bus_answers_503_in_the_problem_shape(live_server, monkeypatch):
    monkeypatch.setattr(live_bus, "_bus", live_bus._RedisBus(f"redis://127.0.0.1:{free_port()}/0", "nobody:"))

    response = requests.get(f"{live_server.url}/v1/jobs/job_nothere/events", timeout=10)

    assert response.status_code == 503 and response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == "live_events_unavailable" and error["status"] == 503 and error["detail"]
