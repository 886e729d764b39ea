"""The marketplace never holds a private job's plaintext: not in its database, logs, task
messages, live-bus messages, or API answers.

A unique marker goes into the prompt, and the echo model puts it in the result too.
After the job has run end to end (live server, real node agent, dispatch), every
place the marketplace keeps or sends anything is searched for it, in the clear and
in the encodings a careless path could use (base64 of the JSON, escaped JSON).
"""
import base64
import json
import logging
import uuid

import pytest
from django.db import connection

from jobs.models import JobStatus
from jobs.tasks import dispatch_job
from tests.privacy.helpers import run

pytestmark = pytest.mark.django_db(transaction=True)


def database_dump() -> str:
    """Every row of every table, as text."""
    lines = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            lines.extend(f"{table}: {row!r}" for row in cursor.fetchall())
    return "\n".join(lines)


@pytest.fixture
def channel_messages(monkeypatch):
    """Everything published on the live bus (live events for WebSocket and SSE clients, node frames)."""
    from marketplace import live_bus

    sent = []
    publish = live_bus.publish

    def recording_publish(topic, message):
        sent.append((topic, message))
        publish(topic, message)

    monkeypatch.setattr(live_bus, "publish", recording_publish)
    return sent


def forms_of(marker: str) -> list[str]:
    return [
        marker,
        json.dumps(marker),
        base64.b64encode(marker.encode()).decode()[:16],
        base64.urlsafe_b64encode(marker.encode()).decode()[:16],
        marker.encode().hex(),
    ]


def test_the_marker_is_nowhere_the_marketplace_keeps_or_sends_anything(
    enroll, client, caplog, channel_messages, sent_dispatches
):
    caplog.set_level(logging.DEBUG)
    agent = enroll("alpha")
    marker = f"private-marker-{uuid.uuid4().hex}"
    (offer,) = client.nodes()

    job = client.submit(offer, model_id="echo", input={"prompt": f"tell nobody: {marker}"})
    assert run(job.job_id).status == JobStatus.COMPLETED
    record = client.get(job.job_id)
    public_view = client._call("GET", f"/v1/jobs/{job.job_id}")
    opened = client.result(job)
    assert opened == {"output": {"prompt": f"tell nobody: {marker}"}}, "the marker did make the round trip"

    task_messages = [dispatch_job.message(*(args or ())).encode().decode() for args in sent_dispatches]
    assert task_messages, "the job was queued through the broker"
    assert any(m.get("type") == "status" and m.get("status") == "completed" for _, m in channel_messages)
    places = {
        "database": database_dump(),
        "logs": "\n".join(r.getMessage() + str(r.args) + str(r.exc_text) for r in caplog.records),
        "task messages": "\n".join(task_messages),
        "channel messages": json.dumps(channel_messages, default=str),
        "API answers": json.dumps([record, public_view]),
        # the node operator may see plaintext (no TEE yet), but the agent does not log it either
        "node log": agent.log(),
    }
    for place, text in places.items():
        for form in forms_of(marker):
            assert form not in text, f"the plaintext marker ({form}) leaked into the {place}"
    # and the dump did cover the job: its envelopes are there, as ciphertext
    assert record["encrypted_response"]["ciphertext"] in places["database"]
    assert record["encrypted_request"]["ciphertext"] in places["database"]
