"""Who may call the /v1 API, how often, and what every error looks like."""
import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from marketplace.models import ApiKey, Customer
from marketplace.services import api_key_create, api_key_revoke
from tests import factories

pytestmark = pytest.mark.django_db


def assert_problem(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) >= {"status", "title", "detail", "code"}
    assert error["status"] == status and error["code"] == code
    return error


@pytest.fixture
def alice_key(alice):
    return api_key_create(customer=alice)


def test_no_credentials_is_a_json_401(db):
    response = APIClient().get("/v1/jobs")
    assert_problem(response, 401, "unauthorized")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_AUTHORIZATION": "Bearer not-a-real-key"},
        {"HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz"},
        {"HTTP_AUTHORIZATION": "Bearer"},
        {"HTTP_X_B3IQ_CUSTOMER_ID": "cus_x"},
        {"HTTP_X_B3IQ_CUSTOMER_TOKEN": "mk_x"},
    ],
)
def test_bad_credentials_are_a_json_401(db, headers):
    assert_problem(APIClient().get("/v1/jobs", **headers), 401, "unauthorized")


def test_a_bearer_key_authenticates_and_records_its_use(alice, alice_key):
    response = APIClient().get("/v1/jobs", HTTP_AUTHORIZATION=f"Bearer {alice_key.secret}")
    assert response.status_code == 200
    alice_key.api_key.refresh_from_db()
    assert alice_key.api_key.last_used_at is not None


def test_the_b3iq_header_pair_authenticates(alice, alice_key):
    response = APIClient().get(
        "/v1/jobs", HTTP_X_B3IQ_CUSTOMER_ID=alice.public_id, HTTP_X_B3IQ_CUSTOMER_TOKEN=alice_key.secret
    )
    assert response.status_code == 200


def test_the_b3iq_pair_must_name_the_keys_own_customer(alice_key, bob):
    response = APIClient().get(
        "/v1/jobs", HTTP_X_B3IQ_CUSTOMER_ID=bob.public_id, HTTP_X_B3IQ_CUSTOMER_TOKEN=alice_key.secret
    )
    assert_problem(response, 401, "unauthorized")


def test_a_revoked_key_no_longer_works(alice_key):
    api_key_revoke(api_key=alice_key.api_key)
    assert_problem(APIClient().get("/v1/jobs", HTTP_AUTHORIZATION=f"Bearer {alice_key.secret}"), 401, "unauthorized")


def test_keys_are_stored_hashed(alice_key):
    stored = ApiKey.objects.get(pk=alice_key.api_key.pk)
    assert alice_key.secret not in (stored.secret_hash, stored.prefix)
    assert stored.prefix == alice_key.secret[:10]


def test_the_rate_limit_is_per_api_key_with_retry_after(alice, bob):
    alice.rate_limit_per_minute = 3
    alice.save()
    alice_api, alice_second_key, bob_api = factories.api_client(alice), factories.api_client(alice), factories.api_client(bob)
    assert [alice_api.get("/v1/jobs").status_code for _ in range(3)] == [200, 200, 200]
    refused = alice_api.get("/v1/jobs")
    assert_problem(refused, 429, "rate_limited")
    assert 1 <= int(refused["Retry-After"]) <= 60
    # another key, even of the same customer, and another customer, have their own budgets
    assert alice_second_key.get("/v1/jobs").status_code == 200
    assert bob_api.get("/v1/jobs").status_code == 200


def test_the_hour_limit_applies_too(alice):
    alice.rate_limit_per_hour = 2
    alice.save()
    api = factories.api_client(alice)
    assert [api.get("/v1/jobs").status_code for _ in range(3)] == [200, 200, 429]


def test_an_unknown_route_is_a_json_404(alice_api):
    assert_problem(alice_api.get("/v1/no/such/thing"), 404, "not_found")


def test_a_wrong_method_is_a_json_405(alice_api):
    assert_problem(alice_api.put("/v1/jobs", {}, format="json"), 405, "method_not_allowed")


def test_a_server_error_is_a_json_500(alice_api, monkeypatch):
    from jobs import apis

    def explode(**kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr(apis, "jobs_page", explode)
    alice_api.raise_request_exception = False
    error = assert_problem(alice_api.get("/v1/jobs"), 500, "server_error")
    assert "fire" not in error["detail"]


def test_createapikey_prints_only_a_working_key(db, capsys):
    call_command("createapikey", "--customer", "carol")
    key = capsys.readouterr().out.strip()
    assert key.startswith("mk_") and "\n" not in key
    assert Customer.objects.filter(name="carol").exists()
    assert APIClient().get("/v1/jobs", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200
