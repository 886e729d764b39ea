"""Live streams held to their API key: revoking the key ends them within a second, and one key
holds at most MAX_STREAMS_PER_KEY streams on a web process (429 in the problem shape past it)."""
import asyncio
import json
import threading
import time

import pytest
import requests
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from jobs.models import Job
from marketplace.asgi import application
from marketplace.services import api_key_create, api_key_revoke
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def watched():
    """A customer's key and a job of theirs that stays queued: its stream would run for ever."""
    alice = factories.customer("alice")
    issued = api_key_create(customer=alice)
    job = Job.objects.create(customer=alice, api_key=issued.api_key, model="echo", input="x")
    return issued, job


def _open_stream(url: str, secret: str) -> requests.Response:
    response = requests.get(url, headers={"Authorization": f"Bearer {secret}"}, stream=True, timeout=15)
    assert response.status_code == 200, response.text[:300]
    return response


def test_revoking_a_key_ends_its_event_streams_within_a_second(live_server, watched):
    issued, job = watched
    other = api_key_create(customer=job.customer)
    url = f"{live_server.url}/v1/jobs/{job.public_id}/events"
    revoked_streams = [_open_stream(url, issued.secret) for _ in range(3)]
    kept = _open_stream(url, other.secret)
    ended = {}

    def read(index, response):
        lines = [line for line in response.iter_lines(decode_unicode=True) if line.startswith("data: ")]
        ended[index] = (time.monotonic(), [json.loads(line[6:]) for line in lines])

    readers = [threading.Thread(target=read, args=(i, r), daemon=True) for i, r in enumerate(revoked_streams)]
    for reader in readers:
        reader.start()
    time.sleep(0.5)  # the snapshots are in
    api_key_revoke(api_key=issued.api_key)
    revoked_at = time.monotonic()
    for reader in readers:
        reader.join(5)
    assert len(ended) == 3, "every stream on the revoked key ended"
    assert all(at - revoked_at < 1.0 for at, _ in ended.values()), [at - revoked_at for at, _ in ended.values()]
    assert all(events[-1] == {"type": "error", "code": "api_key_revoked", "detail": "the API key was revoked"}
               for _, events in ended.values())
    assert requests.get(url, headers={"Authorization": f"Bearer {issued.secret}"}, timeout=10).status_code == 401
    kept.close()  # the other key's stream was not touched: still open until here
    for response in revoked_streams:
        response.close()


def test_revoking_a_key_closes_its_websockets(watched):
    issued, job = watched

    async def scenario():
        socket = WebsocketCommunicator(application, f"/ws/jobs/{job.public_id}/",
                                       headers=[(b"authorization", f"Bearer {issued.secret}".encode())])
        connected, _ = await socket.connect()
        assert connected
        assert (await socket.receive_json_from())["status"] == "queued"
        await sync_to_async(api_key_revoke)(api_key=issued.api_key)
        closed = await socket.receive_output(timeout=1)
        assert closed == {"type": "websocket.close", "code": 4401}
        await socket.wait()

    asyncio.run(scenario())


def test_one_key_holds_at_most_its_cap_of_streams(live_server, watched, settings):
    settings.MAX_STREAMS_PER_KEY = 2
    issued, job = watched
    url = f"{live_server.url}/v1/jobs/{job.public_id}/events"
    held = [_open_stream(url, issued.secret) for _ in range(2)]
    refused = requests.get(url, headers={"Authorization": f"Bearer {issued.secret}"}, timeout=10)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_streams"
    others = _open_stream(url, api_key_create(customer=job.customer).secret)  # another key is its own
    held.pop().close()
    deadline = time.monotonic() + 5
    while True:  # the server sees the close a moment later
        again = requests.get(url, headers={"Authorization": f"Bearer {issued.secret}"}, stream=True, timeout=10)
        if again.status_code == 200 or time.monotonic() > deadline:
            break
        again.close()
        time.sleep(0.1)
    assert again.status_code == 200
    for response in (*held, others, again):
        response.close()
