"""Staff set pricing, limits and node approval from the Django admin."""
import json
import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from billing.models import PricingPolicy
from billing.selectors import pricing_policy_current
from marketplace.models import Customer
from nodes.models import EnrollmentToken, Node
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    get_user_model().objects.create_superuser("root", "root@example.invalid", "pw")
    client.login(username="root", password="pw")
    return client


def test_publishing_a_pricing_version_keeps_the_old_one_and_the_next_quote_uses_it(staff, alice_api, echo_node):
    pricing_policy_current()
    response = staff.post("/admin/billing/pricingpolicy/add/", {
        "gpu_rates_wei": json.dumps({"cpu": "3"}),
        "default_rate_wei": "5",
        "priority_multipliers_bps": json.dumps({"normal": 10000}),
        "default_expected_seconds": "10",
        "model_base_prices_wei": "{}",
        "platform_fee_bps": "1000",
        "minimum_charge_wei": "0",
        "minimum_withdrawal_wei": "0",
        "note": "cheaper CPU",
    })
    assert response.status_code == 302, response.content
    assert list(PricingPolicy.objects.values_list("version", flat=True)) == [2, 1]
    assert PricingPolicy.objects.get(version=1).gpu_rates_wei["cpu"] != "3"
    quote = alice_api.post("/v1/jobs", {"model": "echo", "input": 1}, format="json").json()
    assert quote["policy_version"] == 2 and quote["estimated_cost_wei"] == "30"
    # an old version cannot be edited: its form has no editable field
    page = staff.get(f"/admin/billing/pricingpolicy/{PricingPolicy.objects.get(version=1).pk}/change/").content.decode()
    assert 'name="gpu_rates_wei"' not in page


def test_staff_change_a_customers_rate_limit_and_quota(staff, alice):
    response = staff.post(f"/admin/marketplace/customer/{alice.pk}/change/", {
        "name": alice.name, "rate_limit_per_minute": "5", "rate_limit_per_hour": "50", "max_concurrent_jobs": "2",
        "api_keys-TOTAL_FORMS": "0", "api_keys-INITIAL_FORMS": "0",
    })
    assert response.status_code == 302, response.content
    alice.refresh_from_db()
    assert (alice.minute_limit, alice.hour_limit, alice.concurrent_job_limit) == (5, 50, 2)


def test_an_enrolment_token_made_in_the_admin_shows_the_runnode_command_once(staff):
    miner = factories.miner("mia")
    response = staff.post("/admin/nodes/enrollmenttoken/add/", {"miner": miner.pk}, follow=True)
    page = response.content.decode()
    match = re.search(r"runnode --port \d+ --marketplace (\S+) --enroll-token (enroll_\S+)", page)
    assert match, page[:2000]
    token = EnrollmentToken.objects.get(miner=miner)
    assert match.group(2).startswith(token.prefix) and match.group(2) not in token.secret_hash


def test_a_suspended_node_gets_no_jobs(staff):
    from nodes.selectors import node_candidates

    node = factories.node(models=("echo",))
    staff.post("/admin/nodes/node/", {"action": "suspend", "_selected_action": [node.pk]})
    assert Node.objects.get(pk=node.pk).approval == Node.Approval.SUSPENDED
    assert node_candidates(model="echo", containers=[], gpu_type="", gpu_count=0, min_vram_gb=0, exclude=[]) == []
    staff.post("/admin/nodes/node/", {"action": "approve", "_selected_action": [node.pk]})
    assert Node.objects.get(pk=node.pk).approval == Node.Approval.APPROVED


def test_issuing_an_api_key_from_the_admin(staff, alice):
    response = staff.post("/admin/marketplace/customer/", {"action": "issue_api_key", "_selected_action": [alice.pk]},
                          follow=True)
    key = re.search(r"(mk_[A-Za-z0-9_-]{20,})", response.content.decode()).group(1)
    from rest_framework.test import APIClient

    assert APIClient().get("/v1/jobs", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200
    assert Customer.objects.get(pk=alice.pk).api_keys.count() == 1


def test_staff_deposit_and_refund_with_a_reason_and_the_treasury_reconciles(staff, alice):
    from billing.ledger import account_for_customer
    from billing.models import LedgerAdjustment

    before = int(account_for_customer(alice).available_wei)
    response = staff.post("/admin/billing/ledgeradjustment/add/", {
        "customer": alice.pk, "kind": "deposit", "amount_wei": "123456789012345678901234", "reason": "wire transfer 42",
    })
    assert response.status_code == 302, response.content
    staff.post("/admin/billing/ledgeradjustment/add/", {
        "customer": alice.pk, "kind": "refund", "amount_wei": "4", "reason": "slow job",
    })
    assert int(account_for_customer(alice).available_wei) == before + 123456789012345678901234 + 4
    deposit = LedgerAdjustment.objects.get(reason="wire transfer 42")
    assert deposit.created_by.username == "root" and deposit.transaction.memo == "wire transfer 42"
    page = staff.get("/admin/billing/account/treasury/").content.decode()
    assert "<strong>balances</strong>" in page and str(before + 123456789012345678901234) in page  # the wei, on hover
    assert "ETH</span>" in page, "amounts read in ether"
    assert "/admin/billing/account/treasury/" in staff.get("/admin/").content.decode(), "linked from the index"


@pytest.mark.parametrize("amount, said", [
    ("0", "positive"), ("-5", "positive"), ("9" * 78, "at most"), (str(10**36 + 1), "at most"),
])
def test_a_deposit_out_of_bounds_is_a_form_error_and_moves_nothing(staff, alice, amount, said):
    from billing.ledger import account_for_customer, conservation_holds
    from billing.models import LedgerAdjustment

    before = int(account_for_customer(alice).available_wei)
    response = staff.post("/admin/billing/ledgeradjustment/add/", {
        "customer": alice.pk, "kind": "deposit", "amount_wei": amount, "reason": "typo",
    }, follow=True)
    page = response.content.decode()
    assert response.status_code == 200 and said in page and "successfully" not in page
    assert not LedgerAdjustment.objects.filter(reason="typo").exists()
    assert int(account_for_customer(alice).available_wei) == before and conservation_holds()


def test_staff_set_a_keys_own_limits(staff, alice):
    issued = factories.api_client(alice).api_key
    response = staff.post(f"/admin/marketplace/apikey/{issued.api_key.pk}/change/", {
        "name": "ci", "rate_limit_per_minute": "3", "rate_limit_per_hour": "30", "max_concurrent_jobs": "1",
        "budget_wei": "1000",
    })
    assert response.status_code == 302, response.content
    issued.api_key.refresh_from_db()
    key = issued.api_key
    assert (key.minute_limit, key.hour_limit, key.max_concurrent_jobs, key.budget_wei) == (3, 30, 1, 1000)


def test_staff_inspect_a_job_with_its_events_and_attempts(staff, alice, echo_node):
    from jobs.models import Job, JobAttempt

    job = Job.objects.create(customer=alice, model="echo", input="x", status="failed", node=echo_node)
    job.events.create(old_status="running", new_status="failed", reason="container echo failed: boom")
    JobAttempt.objects.create(job=job, node=echo_node, number=1, status="failed", error="boom on the node")
    page = staff.get(f"/admin/jobs/job/{job.pk}/change/").content.decode()
    assert "container echo failed: boom" in page and "boom on the node" in page and echo_node.name in page


def test_staff_set_node_price_bounds_and_a_malformed_one_is_a_form_error(staff):
    form = {
        "gpu_rates_wei": json.dumps({"cpu": "3"}), "default_rate_wei": "5",
        "priority_multipliers_bps": json.dumps({"normal": 10000}), "default_expected_seconds": "10",
        "model_base_prices_wei": "{}", "platform_fee_bps": "1000", "minimum_charge_wei": "0", "minimum_withdrawal_wei": "0",
        "note": "bounds",
    }
    for bad in ('{"h100": ["400", "200"]}', '{"h100": "200"}', '{"h100": ["-1", "5"]}', '["200", "400"]'):
        page = staff.post("/admin/billing/pricingpolicy/add/", {**form, "node_price_bounds_wei": bad})
        text = page.content.decode()
        assert page.status_code == 200 and ("the floor first" in text or "JSON object" in text), bad
    assert not PricingPolicy.objects.filter(note="bounds").exists()
    response = staff.post("/admin/billing/pricingpolicy/add/", {**form, "node_price_bounds_wei": '{"h100": ["2", "4"]}'})
    assert response.status_code == 302
    assert PricingPolicy.objects.get(note="bounds").node_price_bounds_wei == {"h100": ["2", "4"]}


def test_a_published_pricing_version_opens_read_only_and_the_current_one_is_marked(staff):
    pricing_policy_current()
    first = PricingPolicy.objects.get()
    page = staff.get(f"/admin/billing/pricingpolicy/{first.pk}/change/").content.decode()
    assert 'name="_save"' not in page, "no save button on history"
    posted = staff.post(f"/admin/billing/pricingpolicy/{first.pk}/change/", {"note": "edited"}, follow=True)
    assert "changed successfully" not in posted.content.decode() and posted.status_code in (200, 403)
    listing = staff.get("/admin/billing/pricingpolicy/").content.decode()
    assert 'alt="True"' in listing, "the current version is marked"


def _charged_job(api, node):
    """A job that ran 1.5 s on ``node`` and completed with a verified receipt: settled, charged."""
    from jobs.models import Job, JobStatus
    from jobs.services.lifecycle import job_transition

    done = Job.objects.get(public_id=api.post("/v1/jobs", {"model": "echo", "input": 2}, format="json").json()["job_id"])
    ran_from = timezone.now() - timedelta(seconds=2)
    Job.objects.filter(pk=done.pk).update(status=JobStatus.RUNNING, node=node, attempt_count=1,
                                          assigned_at=ran_from, started_at=ran_from)
    done.refresh_from_db()
    assert job_transition(job=done, expected=JobStatus.RUNNING, new_status=JobStatus.COMPLETED, reason="done",
                          receipt={"body": {"duration_ms": "1500"}}, receipt_verified=True)
    done.refresh_from_db()
    return done


def test_staff_cancel_and_refund_jobs_from_the_job_list_and_the_ledger_shows_it(staff, alice, alice_api, echo_node):
    from billing.ledger import account_for_customer, balances_match_entries, conservation_holds
    from billing.models import LedgerAdjustment, LedgerTransaction
    from jobs.models import Job, JobStatus

    queued = Job.objects.get(public_id=alice_api.post("/v1/jobs", {"model": "echo", "input": 1}, format="json").json()["job_id"])
    response = staff.post("/admin/jobs/job/", {"action": "cancel_jobs", "_selected_action": [queued.pk]}, follow=True)
    assert "Cancelled 1 job(s)" in response.content.decode()
    queued.refresh_from_db()
    assert queued.status == JobStatus.CANCELLED and queued.status_reason == "cancelled by staff (root)"
    assert queued.billing_status == "released", "its reservation went back"

    done = _charged_job(alice_api, echo_node)
    charged = int(done.charged_price_wei)
    assert done.billing_status == "settled" and charged > 0
    before = int(account_for_customer(alice).available_wei)

    response = staff.post("/admin/jobs/job/", {"action": "refund_jobs", "_selected_action": [done.pk, queued.pk]},
                          follow=True)
    assert "Refunded 1 job(s)" in response.content.decode()
    assert int(account_for_customer(alice).available_wei) == before + charged
    refund = LedgerAdjustment.objects.get(job=done, kind="refund")
    assert refund.created_by.username == "root" and refund.transaction.kind == LedgerTransaction.Kind.REFUND
    again = staff.post("/admin/jobs/job/", {"action": "refund_jobs", "_selected_action": [done.pk]}, follow=True)
    assert "Refunded 0 job(s)" in again.content.decode(), "a job is refunded once"
    assert int(account_for_customer(alice).available_wei) == before + charged
    assert conservation_holds() and balances_match_entries()


def test_staff_cancel_and_refund_one_job_from_its_own_page(staff, client, alice, alice_api, echo_node):
    from billing.ledger import account_for_customer, conservation_holds
    from jobs.models import Job, JobStatus

    queued = Job.objects.get(public_id=alice_api.post("/v1/jobs", {"model": "echo", "input": 1}, format="json").json()["job_id"])
    page = staff.get(f"/admin/jobs/job/{queued.pk}/change/").content.decode()
    assert f'action="/admin/jobs/job/{queued.pk}/cancel/"' in page and "Refund charge" not in page
    assert staff.get(f"/admin/jobs/job/{queued.pk}/cancel/").status_code == 405  # a GET changes nothing
    response = staff.post(f"/admin/jobs/job/{queued.pk}/cancel/", follow=True)
    assert f"Cancelled {queued.public_id}." in response.content.decode()
    queued.refresh_from_db()
    assert queued.status == JobStatus.CANCELLED and queued.status_reason == "cancelled by staff (root)"
    assert "Cancel job" not in staff.get(f"/admin/jobs/job/{queued.pk}/change/").content.decode()
    again = staff.post(f"/admin/jobs/job/{queued.pk}/cancel/", follow=True).content.decode()
    assert "already ended (cancelled): nothing to cancel" in again

    done = _charged_job(alice_api, echo_node)
    charged, before = int(done.charged_price_wei), int(account_for_customer(alice).available_wei)
    page = staff.get(f"/admin/jobs/job/{done.pk}/change/").content.decode()
    assert f'action="/admin/jobs/job/{done.pk}/refund/"' in page and "Cancel job" not in page
    response = staff.post(f"/admin/jobs/job/{done.pk}/refund/", follow=True).content.decode()
    assert f"({charged} wei) to alice" in response
    assert "Refund charge" not in staff.get(f"/admin/jobs/job/{done.pk}/change/").content.decode()
    assert "refunded before" in staff.post(f"/admin/jobs/job/{done.pk}/refund/", follow=True).content.decode()
    assert int(account_for_customer(alice).available_wei) == before + charged, "refunded once"
    assert conservation_holds()
    assert staff.post("/admin/jobs/job/999999/refund/").status_code == 404
    # someone who is not signed in as staff is sent to sign in; nothing moves
    client.logout()
    assert client.post(f"/admin/jobs/job/{done.pk}/refund/").status_code == 302
    assert int(account_for_customer(alice).available_wei) == before + charged


def test_a_customers_page_shows_their_money_the_limits_in_force_and_a_deposit_action(staff, alice):
    page = staff.get(f"/admin/marketplace/customer/{alice.pk}/change/").content.decode()
    assert "1000 ETH balance" in page and "0 ETH reserved" in page
    assert re.search(r"\d+ requests a minute, \d+ an hour, \d+ jobs at once, no monthly spend cap", page)
    link = re.search(r'href="(/admin/billing/ledgeradjustment/add/\?customer=\d+&amp;kind=deposit)"', page).group(1)
    form = staff.get(link.replace("&amp;", "&")).content.decode()
    assert re.search(rf'<option value="{alice.pk}" selected>', form) and re.search(r'<option value="deposit" selected>', form)
