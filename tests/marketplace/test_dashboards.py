"""The customer and miner dashboards over HTTP: sign-in, what each page shows (and to whom), forms.

Two customers and two miners in every test that shows data: nobody sees another's.
"""
import csv
import io
import json
import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from billing.services import funds_deposit
from jobs.models import Job, JobAttempt, JobStatus
from marketplace.models import ApiKey
from nodes.models import EnrollmentToken, Node
from tests import factories

PASSWORD = "correct horse battery staple"


def person(username: str, *, customer=None, miner=None, staff=False):
    user = get_user_model().objects.create_user(username, password=PASSWORD, is_staff=staff)
    for account in (customer, miner):
        if account is not None:
            account.user = user
            account.save(update_fields=["user"])
    return user


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def two_customers(db):
    alice, bob = factories.customer("alice"), factories.customer("bob")
    person("alice", customer=alice)
    person("bob", customer=bob)
    return alice, bob


@pytest.fixture
def two_miners(db):
    mia, max_ = factories.miner("mia"), factories.miner("max")
    person("mia", miner=mia)
    person("max", miner=max_)
    return mia, max_


def job_for(customer, **fields):
    return Job.objects.create(customer=customer, **{"model": "echo", "input": "x", **fields})


def test_signing_in_takes_each_person_to_their_own_dashboard(two_customers, two_miners):
    for username, landing in (("alice", "/dashboard/"), ("mia", "/miner/")):
        client = Client()
        response = client.post("/accounts/login/", {"username": username, "password": PASSWORD}, follow=True)
        assert response.redirect_chain[-1][0] == landing, response.redirect_chain
    assert Client().get("/dashboard/").url.startswith("/accounts/login/?next=/dashboard/")


def test_signing_out_is_a_post_and_ends_the_session(two_customers):
    client = Client()
    client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert client.get("/dashboard/").status_code == 200
    assert client.get("/accounts/logout/").status_code == 405
    client.post("/accounts/logout/")
    assert client.get("/dashboard/").status_code == 302


def test_a_new_customer_sees_the_empty_state(db):
    newcomer = factories.customer("newcomer", funds=0)
    page = signed_in(person("newcomer", customer=newcomer)).get("/dashboard/").content.decode()
    assert "No jobs yet" in page and "Nothing yet in the last 30 days" in page
    assert "0 ETH" in page


def test_the_dashboard_shows_only_the_customers_own_jobs_and_money(two_customers):
    alice, bob = two_customers
    mine = job_for(alice, status=JobStatus.COMPLETED, charged_price_wei=2 * 10**15, billing_status="settled")
    theirs = job_for(bob)
    page = signed_in(alice.user).get("/dashboard/").content.decode()
    assert mine.public_id in page and theirs.public_id not in page
    assert "1000 ETH" in page  # factories fund each customer with 1000 ether
    assert "Spend per day" in page and "<rect" in page, "a day with spend draws a bar"
    client = signed_in(alice.user)
    assert client.get(f"/dashboard/jobs/{mine.public_id}/").status_code == 200
    assert client.get(f"/dashboard/jobs/{theirs.public_id}/").status_code == 404


def test_a_job_page_shows_events_receipt_and_output(two_customers, echo_node):
    alice, _ = two_customers
    job = job_for(alice, status=JobStatus.COMPLETED, node=echo_node, result={"answer": 42}, receipt_hash="ab" * 32,
                  receipt={"body": {"duration_ms": "7"}, "signer": "key", "hash": "ab" * 32}, receipt_verified=True)
    job.events.create(old_status="running", new_status="completed", reason="completed on node")
    page = signed_in(alice.user).get(f"/dashboard/jobs/{job.public_id}/").content.decode()
    assert "&quot;answer&quot;: 42" in page and "ab" * 32 in page and "completed on node" in page and "7 ms" in page


def test_a_private_job_shows_metadata_and_receipt_only(two_customers, echo_node):
    alice, _ = two_customers
    job = job_for(alice, is_private=True, pinned_node=echo_node, input=None, status=JobStatus.COMPLETED,
                  encrypted_response={"ciphertext": "c2VhbGVk"}, receipt_hash="cd" * 32,
                  receipt={"body": {"duration_ms": "3"}, "signer": "key", "hash": "cd" * 32})
    page = signed_in(alice.user).get(f"/dashboard/jobs/{job.public_id}/").content.decode()
    assert "end-to-end encrypted" in page and "cd" * 32 in page
    assert "c2VhbGVk" not in page and 'id="output"' not in page


def test_a_job_page_shows_its_input_times_duration_and_result_and_offers_what_fits_its_state(
        two_customers, echo_node):
    alice, _ = two_customers
    started = timezone.now() - timedelta(seconds=5)
    done = job_for(alice, status=JobStatus.COMPLETED, node=echo_node, input={"text": "hello there"},
                   result={"answer": 42}, started_at=started, completed_at=started + timedelta(seconds=1.5))
    page = signed_in(alice.user).get(f"/dashboard/jobs/{done.public_id}/").content.decode()
    assert "hello there" in page, "the input is shown"
    assert '<dd data-testid="duration">1.50 s</dd>' in page
    assert started.strftime("%Y-%m-%d %H:%M:%S") in page, "the start time, readable"
    assert 'data-testid="result"' in page and "&quot;answer&quot;: 42" in page
    assert f"/dashboard/jobs/{done.public_id}/result.json" in page and "Run again" in page
    assert "Cancel job" not in page and "<progress" not in page, "a finished job cannot be cancelled"

    queued = job_for(alice, progress=0)
    page = signed_in(alice.user).get(f"/dashboard/jobs/{queued.public_id}/").content.decode()
    assert "Cancel job" in page and '<progress id="job-progress"' in page
    assert "result.json" not in page, "nothing to download yet"


def test_a_new_customer_is_shown_how_to_start_until_a_first_job_completes(db, echo_node):
    newcomer = factories.customer("newcomer", funds=0)
    client = signed_in(person("newcomer", customer=newcomer))
    page = client.get("/dashboard/").content.decode()
    panel = re.search(r'<section class="card getting-started".*?</section>', page, re.S).group(0)
    assert "Add funds" in panel and "ask them for a deposit" in panel, "no funds: told how to get them"
    assert "Create an API key" in panel and 'href="/v1/docs/"' in panel
    assert "curl -X POST http://testserver/v1/jobs" in panel and "$MARKET_API_KEY" in panel
    assert 'data-copy="start-snippet"' in panel
    refused = client.post("/dashboard/jobs/new/", {"model": "echo", "input": "hi", "priority": "normal"})
    assert "ask them for a deposit" in refused.content.decode(), "a refusal for money says the next step"

    client.post("/dashboard/keys/", {"name": "laptop"})
    keys_page = client.get("/dashboard/keys/").content.decode()
    secret = re.search(r'data-testid="new-key" type="text" readonly value="([^"]+)"', keys_page).group(1)
    assert f"Authorization: Bearer {secret}" in keys_page, "the snippet carries the new key, on the one page that shows it"
    assert secret not in client.get("/dashboard/").content.decode(), "and no other page ever does"

    funds_deposit(customer=newcomer, amount=10**18, reason="test")
    page = client.get("/dashboard/").content.decode()
    assert "you have 1 ETH to spend" in page and "you have one" in page
    job_for(newcomer, status=JobStatus.COMPLETED)
    assert "Getting started" not in client.get("/dashboard/").content.decode()


def test_the_spend_chart_has_labelled_axes_and_its_table_beside_it(two_customers):
    alice, _ = two_customers
    job_for(alice, status=JobStatus.COMPLETED, charged_price_wei=4 * 10**15, billing_status="settled")
    page = signed_in(alice.user).get("/dashboard/").content.decode()
    amounts = re.search(r'<div class="chart-amounts"[^>]*>(.*?)</div>', page).group(1)
    assert re.findall(r"<span>(.*?)</span>", amounts) == ["0.004 ETH", "0.002 ETH", "0"]
    today = timezone.now().date()
    days = re.findall(r"<span>(.*?)</span>", re.search(r'<div class="chart-days"[^>]*>(.*?)</div>', page).group(1))
    assert len(days) == 3 and days[-1] == f"{today:%b} {today.day}"
    table = re.search(r'<table class="chart-table">.*?</table>', page, re.S).group(0)
    assert f"<td>{today.isoformat()}</td><td>0.004 ETH</td>" in table and "<details" not in page


def test_the_jobs_table_pages_filters_by_status_and_model_and_finds_a_job_by_id(two_customers):
    alice, bob = two_customers
    started = timezone.now() - timedelta(minutes=5)
    settled = job_for(alice, model="tokens", status=JobStatus.COMPLETED, billing_status="settled",
                      charged_price_wei=1_500_000_000_000_000, started_at=started,
                      completed_at=started + timedelta(seconds=2))
    failed = [job_for(alice, status=JobStatus.FAILED) for _ in range(3)]
    for _ in range(26):
        job_for(alice)
    theirs = job_for(bob, status=JobStatus.FAILED)
    client = signed_in(alice.user)

    def rows(page: str) -> list[str]:
        return re.findall(r'<tr id="job-(job_\w+)"', page)

    first = client.get("/dashboard/").content.decode()
    assert len(rows(first)) == 25 and "25 of 30 jobs" in first and theirs.public_id not in first
    older = re.search(r'<a href="(\?cursor=[^"]+)" rel="next">Older jobs</a>', first).group(1)
    second = client.get(f"/dashboard/{older}").content.decode()
    assert len(rows(second)) == 5 and not set(rows(first)) & set(rows(second)) and "Newest jobs" in second
    assert settled.public_id in rows(second)
    assert "0.0015 ETH" in second and "2.00 s" in second, "the cost and duration columns"
    assert 'data-insert="false"' in second, "an older page takes no live rows"

    only_failed = client.get("/dashboard/?status=failed").content.decode()
    assert sorted(rows(only_failed)) == sorted(j.public_id for j in failed) and 'data-insert="false"' in only_failed
    assert rows(client.get("/dashboard/?model=tokens").content.decode()) == [settled.public_id]
    assert rows(client.get(f"/dashboard/?job_id={settled.public_id[:12]}").content.decode()) == [settled.public_id]
    assert "No job matches" in client.get("/dashboard/?job_id=job_nothing").content.decode()
    assert len(rows(client.get("/dashboard/?cursor=not-ours&status=bogus").content.decode())) == 25, \
        "a cursor or a status we never gave out shows the first page, not an error"


def test_a_failed_job_says_its_error_once_and_shows_no_receipt(two_customers, echo_node):
    alice, _ = two_customers
    error = "container exited with status 3: bad input"
    job = job_for(alice, status=JobStatus.FAILED, node=echo_node, error=error, status_reason=error)
    job.events.create(old_status="running", new_status="failed", reason=error)
    JobAttempt.objects.create(job=job, node=echo_node, number=1, status=JobAttempt.Status.FAILED, error=error)
    page = signed_in(alice.user).get(f"/dashboard/jobs/{job.public_id}/").content.decode()
    assert page.count(error) == 1, "said once, not by the status, the error, the event and the attempt"
    assert "receipt-heading" not in page and "Verified" not in page, "no receipt block without a receipt"


def test_cancelling_from_the_job_page_ends_the_job_and_releases_its_money(two_customers, echo_node):
    alice, bob = two_customers
    client = signed_in(alice.user)
    client.post("/dashboard/jobs/new/", {"model": "echo", "input": '{"text": "hi"}', "priority": "normal"})
    job = Job.objects.get(customer=alice)
    assert signed_in(bob.user).post(f"/dashboard/jobs/{job.public_id}/cancel/").status_code == 404
    assert client.get(f"/dashboard/jobs/{job.public_id}/cancel/").status_code == 405
    response = client.post(f"/dashboard/jobs/{job.public_id}/cancel/")
    assert response.status_code == 302 and response.url == f"/dashboard/jobs/{job.public_id}/"
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and job.billing_status == "released"
    again = client.post(f"/dashboard/jobs/{job.public_id}/cancel/", follow=True)
    assert again.status_code == 200, "cancelling a cancelled job is harmless"


def test_running_a_job_again_from_its_page_makes_a_new_job_with_the_same_request(two_customers, echo_node):
    alice, bob = two_customers
    client = signed_in(alice.user)
    client.post("/dashboard/jobs/new/", {"model": "echo", "input": '{"text": "again"}', "priority": "high"})
    first = Job.objects.get(customer=alice)
    assert signed_in(bob.user).post(f"/dashboard/jobs/{first.public_id}/rerun/").status_code == 404
    response = client.post(f"/dashboard/jobs/{first.public_id}/rerun/")
    second = Job.objects.filter(customer=alice).exclude(pk=first.pk).get()
    assert response.url == f"/dashboard/jobs/{second.public_id}/"
    assert (second.model, second.input, second.priority) == ("echo", {"text": "again"}, "high")
    assert second.billing_status == "reserved", "the new job reserved its own money"

    private = job_for(alice, is_private=True, pinned_node=echo_node, input=None)
    refused = client.post(f"/dashboard/jobs/{private.public_id}/rerun/", follow=True)
    assert "private-inference client" in refused.content.decode()
    assert Job.objects.filter(customer=alice).count() == 3


def test_a_result_downloads_as_a_json_file_for_its_customer_only(two_customers):
    alice, bob = two_customers
    done = job_for(alice, status=JobStatus.COMPLETED, result={"answer": 42, "text": "héllo"})
    response = signed_in(alice.user).get(f"/dashboard/jobs/{done.public_id}/result.json")
    assert response.status_code == 200 and response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"] == f'attachment; filename="{done.public_id}-result.json"'
    assert json.loads(response.content) == {"answer": 42, "text": "héllo"}
    assert signed_in(bob.user).get(f"/dashboard/jobs/{done.public_id}/result.json").status_code == 404
    pending = job_for(alice)
    assert signed_in(alice.user).get(f"/dashboard/jobs/{pending.public_id}/result.json").status_code == 404


def test_the_catalogue_lists_what_online_nodes_run_now_with_price_run_time_and_nodes(two_customers, echo_node):
    alice, _ = two_customers
    factories.node(models=("ghost",), online=False)
    factories.node(models=("tokens", "echo"))
    page = signed_in(alice.user).get("/models/").content.decode()
    assert "ghost" not in page, "a model no online node runs is not offered"
    rows = re.findall(r'<tr id="model-([\w-]+)">(.*?)</tr>', page, re.S)
    assert [model for model, _ in rows] == ["tokens", "echo", "sleep"], "the built-in models in their order"
    echo = dict(rows)["echo"]
    assert "Answers with its input" in echo and re.search(r'from <span title="\d+ wei">[\d.]+ (ETH|gwei|wei)</span> a second', echo)
    assert "<td class=\"hide-narrow\">2</td>" in echo, "two nodes online serve echo"
    assert 'href="/dashboard/jobs/new/?model=echo"' in echo


def test_the_playground_starts_from_a_models_example_and_quotes_before_anything_is_submitted(
        two_customers, echo_node):
    alice, _ = two_customers
    client = signed_in(alice.user)
    page = client.get("/dashboard/jobs/new/?model=echo").content.decode()
    assert re.search(r'<option value="echo" data-example="[^"]*" data-description="[^"]*" selected>', page)
    assert "{&quot;text&quot;: &quot;hello&quot;}</textarea>" in page, "its example input is filled in"
    normal = client.get("/models/echo/quote/?priority=normal").json()
    urgent = client.get("/models/echo/quote/?priority=urgent").json()
    assert int(urgent["price_wei"]) > int(normal["price_wei"]) > 0 and normal["price"].endswith(("ETH", "gwei", "wei"))
    assert int(normal["worst_case_wei"]) >= int(normal["price_wei"])
    assert client.get("/models/ghost/quote/").status_code == 404
    bad = client.get("/models/echo/quote/?priority=whenever")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_query"
    assert client.get("/models/ghost/quote/").json()["error"]["code"] == "model_not_found"
    client.post("/dashboard/jobs/new/", {"model": "echo", "input": "hi", "priority": "normal", "max_price_eth": "0.5"})
    assert Job.objects.get(customer=alice).max_price_wei == 5 * 10**17, "the most to pay is asked in ether"


def test_amounts_read_in_ether_or_gwei_with_the_exact_wei_beside():
    from marketplace.templatetags.market import readable_wei, wei

    assert [readable_wei(v) for v in (0, 999, 2_405_000_000_000, 10**15, 1_234_567 * 10**12)] == [
        "0 ETH", "999 wei", "2405 gwei", "0.001 ETH", "1.235 ETH"]
    assert wei(1_500_000_000_000_000) == '<span title="1500000000000000 wei">0.0015 ETH</span>'


def test_submitting_from_the_form_makes_a_job_with_the_customers_money(two_customers, echo_node):
    alice, bob = two_customers
    client = signed_in(alice.user)
    assert "echo" in client.get("/dashboard/jobs/new/").content.decode()
    response = client.post("/dashboard/jobs/new/", {"model": "echo", "input": '{"text": "hi"}', "priority": "normal"})
    job = Job.objects.get(customer=alice)
    assert response.url == f"/dashboard/jobs/{job.public_id}/"
    assert job.input == {"text": "hi"} and job.billing_status == "reserved" and job.api_key is None
    refused = client.post("/dashboard/jobs/new/", {"model": "echo", "input": "x", "priority": "normal",
                                                   "max_price_eth": "0"})
    assert refused.status_code == 200 and "above" in refused.content.decode().lower()
    assert not Job.objects.filter(customer=bob).exists()


def test_an_api_key_is_shown_once_works_and_can_be_revoked(two_customers):
    alice, bob = two_customers
    factories.api_client(bob)  # bob's key must not show on alice's page
    client = signed_in(alice.user)
    made = client.post("/dashboard/keys/", {"name": "laptop"})
    assert made.status_code == 302, "post, redirect, get: a reload makes no second key"
    page = client.get(made["Location"]).content.decode()
    key = ApiKey.objects.get(customer=alice, name="laptop")
    secret = page.split('data-testid="new-key" type="text" readonly value="')[1].split('"')[0]
    assert secret.startswith(key.prefix)
    listing = client.get("/dashboard/keys/").content.decode()
    assert secret not in listing and key.prefix in listing
    assert ApiKey.objects.get(customer=bob).prefix not in listing
    api = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert api.get("/v1/billing/account").status_code == 200
    other = ApiKey.objects.get(customer=bob)
    assert client.post(f"/dashboard/keys/{other.pk}/revoke/").status_code == 404
    client.post(f"/dashboard/keys/{key.pk}/revoke/")
    assert api.get("/v1/billing/account").status_code == 401


def test_usage_exports_as_csv_with_only_the_customers_jobs(two_customers):
    alice, bob = two_customers
    mine = job_for(alice, charged_price_wei=123, billing_status="settled", status=JobStatus.COMPLETED)
    job_for(bob)
    response = signed_in(alice.user).get("/dashboard/usage.csv")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["job_id"], r["charged_wei"], r["status"]) for r in rows] == [(mine.public_id, "123", "completed")]


def test_forms_refuse_a_post_without_the_csrf_token(two_customers):
    alice, _ = two_customers
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice.user)
    assert client.post("/dashboard/keys/", {"name": "x"}).status_code == 403
    assert not ApiKey.objects.filter(customer=alice).exists()


def test_failed_sign_ins_lock_out_the_guessers_address_not_the_owner_on_both_sign_in_pages(two_customers, settings):
    settings.LOGIN_FAILURES_ALLOWED = 3
    guesser = Client(REMOTE_ADDR="10.0.0.9")
    for _ in range(3):
        guesser.post("/accounts/login/", {"username": "alice", "password": "wrong"})
    locked = guesser.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert locked.status_code == 200 and "Too many failed sign-ins" in locked.content.decode()
    owner = Client(REMOTE_ADDR="10.0.0.10").post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert owner.status_code == 302, "the owner, elsewhere, signs in"
    admin_user = person("root", staff=True)
    admin_user.is_superuser = True
    admin_user.save()
    for _ in range(3):
        Client(REMOTE_ADDR="10.0.0.11").post("/admin/login/", {"username": "root", "password": "wrong"})
    again = Client(REMOTE_ADDR="10.0.0.11").post("/admin/login/?next=/admin/", {"username": "root", "password": PASSWORD})
    assert again.status_code == 200, "the admin's sign-in refuses the guesser's address too, right password or not"
    elsewhere = Client(REMOTE_ADDR="10.0.0.12").post("/admin/login/?next=/admin/", {"username": "root", "password": PASSWORD})
    assert elsewhere.status_code == 302


def test_session_cookies_are_http_only_and_same_site(two_customers):
    response = Client().post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    cookie = response.cookies["sessionid"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_a_customer_without_a_miner_account_is_told_so(two_customers):
    alice, _ = two_customers
    response = signed_in(alice.user).get("/miner/")
    assert response.status_code == 403 and "no miner account" in response.content.decode()


def test_the_miner_dashboard_shows_only_the_miners_nodes_with_their_record(two_miners, two_customers):
    mia, max_ = two_miners
    alice, _ = two_customers
    mine = factories.node(owner=mia, models=("echo",), gpu_type="h100", gpu_count=2, vram_gb=80)
    theirs = factories.node(owner=max_, models=("echo",))
    offline = factories.node(owner=mia, models=("echo",), online=False)
    # the node lost one; a customer's bad input failed one and a cancel ended one: only the loss is the node's
    for number, status in enumerate(("succeeded", "succeeded", "succeeded", "lost", "failed", "cancelled"), start=1):
        job = job_for(alice, status=JobStatus.COMPLETED, node=mine, payout_price_wei=10**15, billing_status="settled",
                      completed_at=timezone.now())
        JobAttempt.objects.create(job=job, node=mine, number=1, status=status)
    page = signed_in(mia.user).get("/miner/").content.decode()
    assert mine.public_id in page and offline.public_id in page and theirs.public_id not in page
    row = page.split(f'id="node-{mine.public_id}"')[1].split("</article>")[0]
    assert "online" in row and "2 × h100 (80.0 GB)" in row and "0/4" in row and ">3<" in row and "25%" in row
    assert '<dd data-testid="models">echo</dd>' in row, "the models it serves"
    assert '<dd data-testid="node-earned"><span title="6000000000000000 wei">0.006 ETH</span></dd>' in row, \
        "what this node earned"
    assert "offline" in page.split(f'id="node-{offline.public_id}"')[1].split("</article>")[0]
    Node.objects.filter(pk=mine.pk).update(model_map={"echo": "echo", "all-MiniLM-L6-v2": "embed"},
                                           unavailable_models={"all-MiniLM-L6-v2": "not installed"})
    row = signed_in(mia.user).get("/miner/").content.decode().split(f'id="node-{mine.public_id}"')[1]
    assert "all-MiniLM-L6-v2 (not working: not installed)" in row.split("</article>")[0]
    assert "Earnings per day" in page


def test_a_miner_makes_an_enrolment_token_with_the_command_to_paste_and_revokes_it(two_miners):
    mia, max_ = two_miners
    client = signed_in(mia.user)
    page = client.post("/miner/tokens/").content.decode()
    command = page.split('data-testid="runnode" type="text" readonly value="')[1].split('"')[0]
    assert command.startswith("python manage.py runnode --port 4001 --marketplace http://testserver --enroll-token enroll_")
    token = EnrollmentToken.objects.get(miner=mia)
    assert token.prefix in client.get("/miner/").content.decode()
    assert command.split()[-1] not in client.get("/miner/").content.decode(), "the secret is shown once"
    assert signed_in(max_.user).post(f"/miner/tokens/{token.pk}/revoke/").status_code == 404
    client.post(f"/miner/tokens/{token.pk}/revoke/")
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_a_new_miner_sees_the_empty_state(db):
    newbie = factories.miner("newbie")
    page = signed_in(person("newbie", miner=newbie)).get("/miner/").content.decode()
    assert "No nodes yet" in page and "No unused tokens" in page


def test_staff_set_a_rate_limit_per_key(two_customers):
    alice, _ = two_customers
    api = factories.api_client(alice)
    ApiKey.objects.filter(pk=api.api_key.api_key.pk).update(rate_limit_per_minute=2)
    codes = [api.get("/v1/billing/account").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    other = factories.api_client(alice)
    assert other.get("/v1/billing/account").status_code == 200, "the customer's other keys keep their own limit"


def test_a_miner_sets_a_nodes_price_and_sees_what_it_charges_within_the_policy(two_miners):
    from billing.services import pricing_policy_publish

    pricing_policy_publish(gpu_rates_wei={"h100": "250000"}, priority_multipliers_bps={},
                           node_price_bounds_wei={"h100": ["200000", "400000"]})
    mia, max_ = two_miners
    node = factories.node(owner=mia, gpu_type="h100", gpu_count=1)
    client = signed_in(mia.user)
    row = client.get("/miner/").content.decode().split(f'id="node-{node.public_id}"')[1].split("</article>")[0]
    assert "250000 wei</span> a GPU-second" in row and "the policy's rate" in row
    assert "allows <span title=\"200000 wei\">200000 wei</span> to <span title=\"400000 wei\">" in row

    assert client.post(f"/miner/nodes/{node.public_id}/price/", {"price_per_second_wei": "999999"}).status_code == 302
    node.refresh_from_db()
    assert int(node.price_per_second_wei) == 999999
    row = client.get("/miner/").content.decode().split(f'id="node-{node.public_id}"')[1].split("</article>")[0]
    assert "400000 wei</span> a GPU-second" in row, "held at the policy's ceiling"

    for bad in ("-5", "1e9", "9" * 31, "9" * 400):
        refused = client.post(f"/miner/nodes/{node.public_id}/price/", {"price_per_second_wei": bad})
        assert refused.status_code == 400 and "whole number of wei" in refused.content.decode(), bad
    assert signed_in(max_.user).post(f"/miner/nodes/{node.public_id}/price/",
                                     {"price_per_second_wei": "1"}).status_code == 404, "only its own miner"
    node.refresh_from_db()
    assert int(node.price_per_second_wei) == 999999


def test_a_miner_asks_for_a_withdrawal_on_the_dashboard_and_sees_its_state(two_miners):
    from billing.ledger import EXTERNAL, Move, miner_owner, post
    from billing.models import Withdrawal

    mia, _ = two_miners
    post(kind="deposit", key="earned", moves=[Move(miner_owner(mia.pk), available=5000), Move(EXTERNAL, available=-5000)])
    client = signed_in(mia.user)
    address = "0x" + "cd" * 20
    assert client.post("/miner/withdrawals/", {"amount_wei": "3000", "address": address}).status_code == 302
    page = client.get("/miner/").content.decode()
    table = page.split('id="withdrawals"')[1].split("</table>")[0]
    assert address in table and "requested" in table
    refused = client.post("/miner/withdrawals/", {"amount_wei": "3000", "address": address})
    assert refused.status_code == 402 and "not enough available balance" in refused.content.decode()
    assert client.post("/miner/withdrawals/", {"amount_wei": "x", "address": "nope"}).status_code == 400
    assert Withdrawal.objects.filter(miner=mia).count() == 1


def test_model_names_render_as_names_not_letters_in_the_list_and_on_the_job_page(two_customers):
    """``model|default:containers|join`` joined a model name's letters: "t, o, k, e, n, s"."""
    alice, _ = two_customers
    by_model = job_for(alice, model="tokens")
    chain = job_for(alice, model="", containers=["tokens", "echo"])
    client = signed_in(alice.user)
    listing = client.get("/dashboard/").content.decode()
    for page in (listing, client.get(f"/dashboard/jobs/{by_model.public_id}/").content.decode()):
        assert ">tokens<" in page and "t, o, k" not in page
    assert "tokens, echo" in listing and "tokens, echo" in client.get(f"/dashboard/jobs/{chain.public_id}/").content.decode()


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_the_focus_ring_keeps_3_to_1_and_streamed_output_is_not_read_token_by_token(two_customers):
    from pathlib import Path

    css = (Path(__file__).resolve().parents[2] / "marketplace/static/marketplace/site.css").read_text()
    colours = dict(re.findall(r"--(\w+):\s*(#[0-9a-fA-F]{6})", css))
    ring = re.search(r":focus-visible\s*{\s*outline:\s*\S+\s+solid\s+(\S+?);", css).group(1)
    ring = colours[ring[6:-1]] if ring.startswith("var(") else ring
    for background in (colours["bg"], colours["soft"]):
        lighter, darker = sorted((_luminance(ring), _luminance(background)), reverse=True)
        assert (lighter + 0.05) / (darker + 0.05) >= 3, (ring, background)

    alice, _ = two_customers
    page = signed_in(alice.user).get(f"/dashboard/jobs/{job_for(alice).public_id}/").content.decode()
    assert re.search(r'<pre id="output"[^>]*>', page) and 'id="output" aria-live' not in page
    assert 'id="job-status" data-status="queued" aria-live="polite"' in page


def test_the_staff_console_names_the_marketplace(db):
    get_user_model().objects.create_superuser("root", "root@example.invalid", "pw")
    client = Client()
    client.login(username="root", password="pw")
    page = client.get("/admin/").content.decode()
    assert "Inference marketplace: staff console" in page and "Django administration" not in page


def test_revoking_a_key_or_a_token_asks_first(two_customers, two_miners):
    alice, _ = two_customers
    factories.api_client(alice)
    page = signed_in(alice.user).get("/dashboard/keys/").content.decode()
    assert 'data-confirm="Revoke key' in page and "marketplace/site.js" in page
    mia, _ = two_miners
    client = signed_in(mia.user)
    client.post("/miner/tokens/")
    assert 'data-confirm="Revoke token' in client.get("/miner/").content.decode()
