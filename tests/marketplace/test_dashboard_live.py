"""The dashboards' WebSockets: the signed-in session works from our own pages only.

A browser sends the session cookie with a WebSocket opened by any site, so a
session is honoured only when the Origin is this marketplace (API keys need none).
"""
import asyncio

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client

from jobs.models import Job
from marketplace.asgi import application
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def signed_in_alice():
    alice, bob = factories.customer("alice"), factories.customer("bob")
    alice.user = get_user_model().objects.create_user("alice", password="pw-alice-123")
    alice.save(update_fields=["user"])
    client = Client()
    client.force_login(alice.user)
    return alice, bob, client.cookies["sessionid"].value


def connect(path: str, session: str, origin: str | None):
    headers = [(b"host", b"testserver"), (b"cookie", f"sessionid={session}".encode())]
    if origin:
        headers.append((b"origin", origin.encode()))
    return WebsocketCommunicator(application, path, headers=headers)


async def _rows(path, session, origin):
    communicator = connect(path, session, origin)
    connected, code = await communicator.connect()
    rows = []
    if connected:
        while not await communicator.receive_nothing(timeout=0.3):
            rows.append(await communicator.receive_json_from())
        await communicator.disconnect()
    return connected, code, rows


def test_the_jobs_table_socket_sends_only_the_customers_own_jobs(signed_in_alice):
    alice, bob, session = signed_in_alice
    mine = Job.objects.create(customer=alice, model="echo", input="secret input")
    Job.objects.create(customer=bob, model="echo", input="x")
    connected, _, rows = asyncio.run(_rows("/ws/dashboard/jobs/", session, "http://testserver"))
    assert connected
    assert [r["job_id"] for r in rows] == [mine.public_id]
    assert "secret input" not in str(rows), "a table row carries status, not input"


def test_a_session_socket_from_another_site_is_refused(signed_in_alice):
    alice, _, session = signed_in_alice
    job = Job.objects.create(customer=alice, model="echo", input="x")
    # another site, none, or our host name under the other scheme (a plain-HTTP page is not ours)
    for origin in ("http://evil.example", None, "https://testserver", "ftp://testserver"):
        connected, code, _ = asyncio.run(_rows("/ws/dashboard/jobs/", session, origin))
        assert not connected and code == 4401
        connected, code, _ = asyncio.run(_rows(f"/ws/jobs/{job.public_id}/", session, origin))
        assert not connected and code == 4401


def test_a_job_socket_works_with_the_session_from_our_own_page(signed_in_alice):
    alice, bob, session = signed_in_alice
    job = Job.objects.create(customer=alice, model="echo", input="x")
    connected, _, rows = asyncio.run(_rows(f"/ws/jobs/{job.public_id}/", session, "http://testserver"))
    assert connected and rows[0]["job_id"] == job.public_id
    theirs = Job.objects.create(customer=bob, model="echo", input="x")
    connected, code, _ = asyncio.run(_rows(f"/ws/jobs/{theirs.public_id}/", session, "http://testserver"))
    assert not connected and code == 4404
