"""The customer job API over HTTP: submit, read, list, history, cancel, download."""
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.utils import timezone

from billing.services import pricing_policy_publish
from jobs.models import Job, JobEvent, JobStatus

pytestmark = pytest.mark.django_db

JOB = {"model": "echo", "input": "hello"}


def submit(api, body=None, **headers):
    return api.post("/v1/jobs", body if body is not None else JOB, format="json", **headers)


def assert_problem(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["status"] == status and error["code"] == code
    assert error["title"] and error["detail"]
    return error


def test_submit_queues_a_job_with_a_quote(alice_api, echo_node, sent_dispatches):
    response = submit(alice_api)
    assert response.status_code == 201
    body = response.json()
    assert body["job_id"].startswith("job_") and body["status"] == "queued"
    # the AITBC reference's shape: a number in ether, with the exact wei beside it as a string
    wei = body["estimated_cost_wei"]
    assert isinstance(wei, str) and int(wei) > 0
    assert isinstance(body["estimated_cost"], float) and body["estimated_cost"] == int(wei) / 10**18
    detail = alice_api.get(f"/v1/jobs/{body['job_id']}").json()
    assert (detail["estimated_cost"], detail["estimated_cost_wei"]) == (body["estimated_cost"], wei)
    assert body["estimated_time_seconds"] >= 1 and body["policy_version"] == 1
    job = Job.objects.get(public_id=body["job_id"])
    assert job.input == "hello" and job.container_data == {"input": "hello"}
    assert list(job.events.values_list("new_status", flat=True)) == ["queued"]


def test_the_quote_follows_the_published_pricing_policy(alice_api, echo_node):
    first = submit(alice_api).json()
    pricing_policy_publish(
        gpu_rates_wei={"cpu": "7", "h100": "1000"},
        priority_multipliers_bps={"low": 5000, "normal": 10000, "urgent": 30000},
        default_expected_seconds=10,
    )
    second = submit(alice_api).json()
    assert second["policy_version"] == first["policy_version"] + 1
    assert second["estimated_cost_wei"] == str(7 * 1 * 10)
    urgent = submit(alice_api, {**JOB, "priority": "urgent"}).json()
    assert urgent["estimated_cost_wei"] == str(7 * 10 * 3)


def test_gpu_requirements_multiply_the_rate(alice_api, db):
    from tests import factories

    factories.node(models=("echo",), gpu_type="h100", gpu_count=2, vram_gb=80)
    pricing_policy_publish(gpu_rates_wei={"cpu": "1", "h100": "1000"}, priority_multipliers_bps={}, default_expected_seconds=10)
    body = submit(alice_api, {**JOB, "requirements": {"gpu_type": "NVIDIA H100", "gpu_count": 2, "min_vram_gb": 40}}).json()
    assert body["estimated_cost_wei"] == str(1000 * 2 * 10)
    assert Job.objects.get(public_id=body["job_id"]).gpu_type == "h100"


def test_estimated_time_uses_the_models_recent_median(alice_api, alice, echo_node):
    now = timezone.now()
    for seconds in (4, 6, 100):
        Job.objects.create(customer=alice, model="echo", status=JobStatus.COMPLETED,
                           started_at=now - timedelta(seconds=seconds), completed_at=now)
    body = submit(alice_api).json()
    assert body["estimated_time_seconds"] == 6  # nothing queued ahead: just the median run


BAD_SUBMITS = [
    ({"model": "echo"}, 422, "validation_error"),
    ({"input": "x"}, 422, "validation_error"),
    ({"model": "echo", "containers": ["echo"], "input": 1}, 422, "validation_error"),
    ({"model": 5, "input": 1}, 422, "validation_error"),
    ({"containers": "echo", "input": 1}, 422, "validation_error"),
    ({"containers": [], "input": 1}, 422, "validation_error"),
    ({**JOB, "priority": "asap"}, 422, "validation_error"),
    ({**JOB, "timeout_seconds": -5}, 422, "validation_error"),
    ({**JOB, "timeout_seconds": 0}, 422, "validation_error"),
    ({**JOB, "timeout_seconds": 10**9}, 422, "validation_error"),
    ({**JOB, "timeout_seconds": "soon"}, 422, "validation_error"),
    ({**JOB, "requirements": {"gpu_count": -1}}, 422, "validation_error"),
    ({**JOB, "requirements": {"gpu_count": "two"}}, 422, "validation_error"),
    ({**JOB, "requirements": {"min_vram_gb": "lots"}}, 422, "validation_error"),
    ({**JOB, "requirements": "h100"}, 422, "validation_error"),
    ({**JOB, "output_config": {"destination": "s3://bucket/x"}}, 422, "validation_error"),
    ({**JOB, "output_config": {"format": "xml"}}, 422, "validation_error"),
    ({**JOB, "colour": "blue"}, 422, "validation_error"),
    ({"model": "gpt-99", "input": "x"}, 422, "unknown_model"),
    ({"containers": ["echo", "nope"], "input": "x"}, 422, "unknown_model"),
    ([1, 2], 422, "validation_error"),
]


@pytest.mark.parametrize("body,status,code", BAD_SUBMITS, ids=[str(b[0])[:60] for b in BAD_SUBMITS])
def test_bad_submits_are_refused_in_the_error_shape(alice_api, echo_node, body, status, code):
    assert_problem(submit(alice_api, body), status, code)
    assert not Job.objects.exists()


def test_malformed_json_is_a_400(alice_api):
    response = alice_api.post("/v1/jobs", data=b"{nope", content_type="application/json")
    assert_problem(response, 400, "invalid_json")


def test_an_oversized_body_is_a_413(alice_api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = submit(alice_api, {**JOB, "input": "x" * 5000})
    assert_problem(response, 413, "payload_too_large")


def test_a_retried_submit_with_the_same_idempotency_key_returns_the_same_job(alice_api, echo_node, sent_dispatches):
    first = submit(alice_api, HTTP_IDEMPOTENCY_KEY="order-42")
    again = submit(alice_api, HTTP_IDEMPOTENCY_KEY="order-42")
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["job_id"] == again.json()["job_id"]
    assert Job.objects.count() == 1
    conflict = submit(alice_api, {**JOB, "input": "something else"}, HTTP_IDEMPOTENCY_KEY="order-42")
    assert_problem(conflict, 409, "idempotency_key_reused")


def test_the_same_idempotency_key_is_separate_per_customer(alice_api, bob_api, echo_node):
    a = submit(alice_api, HTTP_IDEMPOTENCY_KEY="k").json()["job_id"]
    b = submit(bob_api, HTTP_IDEMPOTENCY_KEY="k").json()["job_id"]
    assert a != b


def test_the_concurrent_job_quota_is_enforced(alice, alice_api, echo_node):
    alice.max_concurrent_jobs = 2
    alice.save()
    assert submit(alice_api).status_code == 201
    assert submit(alice_api).status_code == 201
    assert_problem(submit(alice_api), 429, "concurrent_job_limit")
    Job.objects.filter(customer=alice).update(status=JobStatus.COMPLETED)
    assert submit(alice_api).status_code == 201


def test_reading_a_job(alice_api, echo_node):
    job_id = submit(alice_api).json()["job_id"]
    body = alice_api.get(f"/v1/jobs/{job_id}").json()
    assert body["job_id"] == job_id and body["status"] == "queued" and body["progress"] == 0
    for field in ("miner_id", "created_at", "started_at", "completed_at", "result"):
        assert field in body
    assert body["created_at"].endswith("Z") and body["result"] is None and body["miner_id"] is None


def test_another_customers_job_is_a_404_everywhere(alice_api, bob_api, echo_node):
    job_id = submit(alice_api).json()["job_id"]
    for method, path in [("get", f"/v1/jobs/{job_id}"), ("delete", f"/v1/jobs/{job_id}"),
                         ("get", f"/v1/jobs/{job_id}/download")]:
        assert_problem(getattr(bob_api, method)(path), 404, "job_not_found")
    assert bob_api.get("/v1/jobs").json()["total"] == 0
    assert Job.objects.get(public_id=job_id).status == JobStatus.QUEUED


def test_listing_filters_and_pages_with_a_cursor(alice, alice_api, bob_api, echo_node):
    ids = [submit(alice_api).json()["job_id"] for _ in range(5)]
    submit(bob_api)
    Job.objects.filter(public_id=ids[0]).update(status=JobStatus.COMPLETED)
    page = alice_api.get("/v1/jobs?limit=2").json()
    assert page["total"] == 5 and page["has_more"] is True
    assert [j["job_id"] for j in page["jobs"]] == ids[::-1][:2]
    assert set(page["jobs"][0]) >= {"job_id", "status", "model"}
    seen = [j["job_id"] for j in page["jobs"]]
    while page["has_more"]:
        page = alice_api.get(f"/v1/jobs?limit=2&cursor={page['next_cursor']}").json()
        seen += [j["job_id"] for j in page["jobs"]]
    assert seen == ids[::-1]
    completed = alice_api.get("/v1/jobs?status=completed").json()
    assert [j["job_id"] for j in completed["jobs"]] == [ids[0]] and completed["total"] == 1


@pytest.mark.parametrize("query", ["status=done", "limit=0", "limit=1000", "limit=x", "cursor=!!!"])
def test_bad_list_queries_are_400(alice_api, query):
    assert_problem(alice_api.get(f"/v1/jobs?{query}"), 400, "invalid_query")


def test_history_filters_by_date(alice, alice_api, echo_node):
    def job_on(day):
        return Job.objects.create(customer=alice, model="echo", created_at=datetime(2026, 1, day, 12, tzinfo=dt_timezone.utc))

    early, middle, late = job_on(5), job_on(15), job_on(25)
    body = alice_api.get("/v1/jobs/history?from=2026-01-10&to=2026-01-20").json()
    assert [j["job_id"] for j in body["jobs"]] == [middle.public_id]
    assert body["total"] == 1 and body["from"] == "2026-01-10"
    assert alice_api.get("/v1/jobs/history?from=2026-01-15").json()["total"] == 2
    assert alice_api.get("/v1/jobs/history?to=2026-01-15").json()["total"] == 2
    assert alice_api.get("/v1/jobs/history").json()["total"] == 3
    assert late and early


@pytest.mark.parametrize("query", ["from=yesterday", "to=2026-13-01", "from=2026-02-01&to=2026-01-01"])
def test_bad_history_queries_are_400(alice_api, query):
    assert_problem(alice_api.get(f"/v1/jobs/history?{query}"), 400, "invalid_query")


def test_cancelling_a_queued_job_is_idempotent(alice_api, echo_node):
    job_id = submit(alice_api).json()["job_id"]
    first = alice_api.delete(f"/v1/jobs/{job_id}")
    assert first.status_code == 200 and first.json()["status"] == "cancelled"
    again = alice_api.delete(f"/v1/jobs/{job_id}")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    job = Job.objects.get(public_id=job_id)
    assert list(JobEvent.objects.filter(job=job).values_list("new_status", flat=True)) == ["queued", "cancelled"]


def test_cancelling_a_running_job_reaches_its_node(alice_api, echo_node, monkeypatch, django_capture_on_commit_callbacks):
    from jobs.dispatch import node_channel

    frames = []
    monkeypatch.setattr(node_channel, "send_to_channel", lambda channel, message: frames.append((channel, message)))
    job_id = submit(alice_api).json()["job_id"]
    Job.objects.filter(public_id=job_id).update(status=JobStatus.RUNNING, node=echo_node, node_job_id="n-1",
                                                attempt_count=1)
    with django_capture_on_commit_callbacks(execute=True):
        assert alice_api.delete(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
    cancel = {"type": "cancel", "job_id": job_id, "attempt": 1}
    assert frames == [(echo_node.channel_name, {"type": "node.frame", "frame": cancel})]


def test_a_finished_job_cannot_be_cancelled(alice_api, echo_node):
    job_id = submit(alice_api).json()["job_id"]
    Job.objects.filter(public_id=job_id).update(status=JobStatus.COMPLETED)
    assert_problem(alice_api.delete(f"/v1/jobs/{job_id}"), 409, "job_state_conflict")


def test_download_gives_the_result_as_a_file(alice_api, echo_node):
    job_id = submit(alice_api).json()["job_id"]
    assert_problem(alice_api.get(f"/v1/jobs/{job_id}/download"), 409, "job_state_conflict")
    Job.objects.filter(public_id=job_id).update(status=JobStatus.COMPLETED, result={"text": "hi", "n": 1})
    response = alice_api.get(f"/v1/jobs/{job_id}/download")
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="{job_id}.json"'
    assert response.json() == {"text": "hi", "n": 1}


def test_download_as_text(alice_api, echo_node):
    job_id = submit(alice_api, {**JOB, "output_config": {"format": "text"}}).json()["job_id"]
    Job.objects.filter(public_id=job_id).update(status=JobStatus.COMPLETED, result={"text": "plain words"})
    response = alice_api.get(f"/v1/jobs/{job_id}/download")
    assert response["Content-Type"].startswith("text/plain") and response.content == b"plain words"


def test_a_nul_character_is_refused_cleanly_not_stored_or_crashed_on(alice_api, echo_node):
    """PostgreSQL's text and jsonb cannot hold U+0000: it is a 422 here, on every database."""
    for body in ({"model": "echo", "input": "a\u0000b"}, {"model": "echo", "input": {"k\u0000": 1}}):
        response = alice_api.post("/v1/jobs", body, format="json")
        assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error", response.content
    assert alice_api.get("/v1/jobs/job_\u0000x").status_code == 404


def test_a_host_this_marketplace_does_not_serve_is_a_400_in_each_surfaces_shape(alice_api):
    # Django answers a disallowed Host with an HTML page unless told otherwise
    response = alice_api.get("/v1/jobs", HTTP_HOST="evil.example")
    assert_problem(response, 400, "bad_request")
    assert "Host" in response.json()["error"]["detail"]
    gateway = alice_api.get("/infernet/mk_whatever/api/status", HTTP_HOST="evil.example")
    assert gateway.status_code == 400 and isinstance(gateway.json()["error"], str)
    page = alice_api.get("/dashboard/", HTTP_HOST="evil.example")
    assert page.status_code == 400
