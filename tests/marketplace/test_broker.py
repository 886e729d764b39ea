"""The web process sends through one RabbitMQ connection, whatever thread a request runs on.

Runs where ``DRAMATIQ_BROKER_URL`` names RabbitMQ (CI's second run); each test declares
its own queues and deletes them at the end.
"""
from __future__ import annotations

import os
import secrets
import threading
import time

import pytest
from dramatiq import Message

from marketplace.broker import SharedConnectionRabbitmqBroker
from tests.support.waiting import wait_for

BROKER_URL = os.environ.get("DRAMATIQ_BROKER_URL", "")
AMQP_PORT = 5672

pytestmark = pytest.mark.skipif(not BROKER_URL.startswith("amqp://"), reason="needs RabbitMQ (DRAMATIQ_BROKER_URL)")


def open_connections_to(port: int) -> int:
    """TCP sockets this process holds to ``port`` (its fds matched against the kernel's table)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed between listing and reading
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == port and fields[9] in inodes:
                    count += 1
    return count


@pytest.fixture
def broker_and_queue(settings):
    broker = SharedConnectionRabbitmqBroker(url=BROKER_URL, middleware=[], heartbeat_poll_seconds=0.5)
    queue_name = f"{settings.DRAMATIQ_QUEUE}-broker-test-{secrets.token_hex(4)}"
    broker.declare_queue(queue_name)
    yield broker, queue_name
    broker.run_on_connection(
        lambda channel: [channel.queue_delete(name) for name in (queue_name, f"{queue_name}.DQ", f"{queue_name}.XQ")]
    )
    broker.close()


def message(queue_name: str, n: int) -> Message:
    return Message(queue_name=queue_name, actor_name="noop", args=(n,), kwargs={}, options={})


def test_the_configured_broker_shares_one_connection():
    import dramatiq

    assert isinstance(dramatiq.get_broker(), SharedConnectionRabbitmqBroker)


def test_fifty_request_threads_send_through_one_connection_and_every_message_arrives(broker_and_queue):
    broker, queue_name = broker_and_queue
    before = open_connections_to(AMQP_PORT)
    errors = []

    def send(n):
        try:
            broker.enqueue(message(queue_name, n))
        except Exception as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(broker.connections) == 1
    assert open_connections_to(AMQP_PORT) - before <= 1
    wait_for(lambda: broker.get_queue_message_counts(queue_name) == (50, 0, 0), timeout=5, interval=0.1,
             message=lambda: f"counts: {broker.get_queue_message_counts(queue_name)}")


def test_a_lost_connection_is_replaced_on_the_next_send(broker_and_queue):
    broker, queue_name = broker_and_queue
    broker.enqueue(message(queue_name, 1))
    broker.run_on_connection(lambda channel: channel.connection.close())  # as if RabbitMQ restarted

    broker.enqueue(message(queue_name, 2))

    # RabbitMQ's count in queue.declare-ok may trail a confirmed publish by a moment
    wait_for(lambda: broker.get_queue_message_counts(queue_name) == (2, 0, 0), timeout=5, interval=0.1,
             message=lambda: f"counts: {broker.get_queue_message_counts(queue_name)}")
    assert len(broker.connections) == 1


def test_an_idle_connection_is_kept_alive_by_its_heartbeats(settings):
    url = f"{BROKER_URL}{'&' if '?' in BROKER_URL else '?'}heartbeat=2"
    broker = SharedConnectionRabbitmqBroker(url=url, middleware=[], heartbeat_poll_seconds=0.2)
    queue_name = f"{settings.DRAMATIQ_QUEUE}-broker-test-{secrets.token_hex(4)}"
    broker.declare_queue(queue_name)
    try:
        broker.enqueue(message(queue_name, 1))
        (connection,) = broker.connections
        time.sleep(7)  # RabbitMQ drops a connection silent for two heartbeat intervals

        broker.enqueue(message(queue_name, 2))

        assert broker.connections == {connection} and connection.is_open
        wait_for(lambda: broker.get_queue_message_counts(queue_name) == (2, 0, 0), timeout=5, interval=0.1,
                 message=lambda: f"counts: {broker.get_queue_message_counts(queue_name)}")
    finally:
        broker.run_on_connection(
            lambda channel: [channel.queue_delete(n) for n in (queue_name, f"{queue_name}.DQ", f"{queue_name}.XQ")]
        )
        broker.close()
