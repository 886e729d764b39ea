"""No page, admin page or API answer shows a secret after it was first issued.

Demo data holds one of every kind of secret, each known here: a customer's API key, a
miner's enrolment token, a node's token (by its hash, all the marketplace keeps). Staff
walk every list and change page of the admin, and the customer every GET of the API,
and none of them may carry a secret or the hash of one.
"""
import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from jobs.models import Job
from marketplace.ids import secret_hash
from marketplace.services import api_key_create
from nodes.models import Node
from nodes.services import enrollment_token_create
from tests import factories


@pytest.fixture
def demo(db):
    alice = factories.customer("alice")
    miner = factories.miner("mia")
    key = api_key_create(customer=alice, name="laptop")
    token = enrollment_token_create(miner=miner)
    node_token = "node-token-known-to-this-test"
    node = factories.node(owner=miner)
    Node.objects.filter(pk=node.pk).update(token_hash=secret_hash(node_token))
    node.refresh_from_db()
    Job.objects.create(customer=alice, api_key=key.api_key, model="echo", input="x", node=node)
    return {
        "api key": key.secret, "api key hash": key.api_key.secret_hash,
        "enrolment token": token.secret, "enrolment token hash": token.token.secret_hash,
        "node token": node_token, "node token hash": node.token_hash,
    }, key.secret


def _leaks(text: str, secrets: dict) -> list[str]:
    return [name for name, value in secrets.items() if value in text]


def test_no_admin_page_shows_a_secret(demo):
    secrets, _ = demo
    get_user_model().objects.create_superuser("root", password="pw")
    staff = Client()
    staff.login(username="root", password="pw")
    pages = 0
    for model, model_admin in admin.site._registry.items():
        info = (model._meta.app_label, model._meta.model_name)
        urls = [reverse("admin:%s_%s_changelist" % info)]
        urls += [reverse("admin:%s_%s_change" % info, args=[obj.pk]) for obj in model._default_manager.all()[:5]]
        for url in urls:
            response = staff.get(url)
            assert response.status_code == 200, url
            assert not _leaks(response.content.decode(), secrets), (url, _leaks(response.content.decode(), secrets))
            pages += 1
    assert pages > 20


def test_no_api_answer_shows_a_secret(demo):
    secrets, api_key = demo
    customer = Client(HTTP_AUTHORIZATION=f"Bearer {api_key}")
    job_id = Job.objects.get().public_id
    for path in ("/v1/jobs", "/v1/jobs/history", f"/v1/jobs/{job_id}", f"/v1/billing/jobs/{job_id}",
                 "/v1/billing/account", "/v1/billing/usage", "/v1/private-inference/nodes",
                 "/v1/private-inference/jobs", "/v1/schema/", f"/infernet/{api_key}/api/jobs",
                 f"/infernet/{api_key}/info", f"/infernet/{api_key}/api/resources"):
        response = customer.get(path)
        assert response.status_code < 500, path
        text = response.content.decode().replace(api_key, "") if path.startswith("/infernet/") else response.content.decode()
        assert not _leaks(text, secrets), (path, _leaks(text, secrets))
