"""The OpenAPI contract stays true: every /v1 route is in it, and real answers validate against it."""
import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from jsonschema import Draft202012Validator

from tests import factories

pytestmark = pytest.mark.django_db

NOT_REST = {"/v1/schema/", "/v1/docs/"}  # the contract itself and its browser


def _routes(patterns, prefix=""):
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            yield "/" + route.replace("<str:", "{").replace("<int:", "{").replace("<id:", "{").replace(">", "}")


@pytest.fixture
def schema(client):
    response = client.get("/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def _json_schema(node, components):
    """OpenAPI 3.0 schema objects as JSON Schema: $refs inlined, ``nullable`` as a null type."""
    if isinstance(node, list):
        return [_json_schema(item, components) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _json_schema(components[node["$ref"].split("/")[-1]], components)
    converted = {k: _json_schema(v, components) for k, v in node.items() if k not in ("nullable", "readOnly")}
    if node.get("nullable"):
        converted = {"anyOf": [converted, {"type": "null"}]}
    return converted


def check(schema, path, method, response):
    operation = schema["paths"][path][method]
    spec = operation["responses"].get(str(response.status_code)) or operation["responses"]["default"]
    body_schema = _json_schema(spec["content"]["application/json"]["schema"], schema["components"]["schemas"])
    errors = sorted(Draft202012Validator(body_schema).iter_errors(response.json()), key=str)
    assert not errors, f"{method.upper()} {path} {response.status_code}: {errors[0]}"


def test_every_v1_route_is_in_the_schema(schema):
    routes = {r for r in _routes(get_resolver().url_patterns) if r.startswith("/v1/")} - NOT_REST
    assert routes and routes <= set(schema["paths"]), routes - set(schema["paths"])
    assert schema["openapi"].startswith("3.")
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert "default" in operation["responses"], f"{method} {path} documents the problem shape"


def test_real_answers_validate_against_the_schema(schema, alice, alice_api, echo_node, client):
    from jobs.models import Job

    submitted = alice_api.post("/v1/jobs", {"model": "echo", "input": {"x": 1}}, format="json")
    check(schema, "/v1/jobs", "post", submitted)
    job_id = submitted.json()["job_id"]
    Job.objects.filter(public_id=job_id).update(status="completed", result={"x": 1}, receipt_hash="ab" * 32,
                                                 receipt={"body": {"duration_ms": "1"}, "hash": "ab" * 32,
                                                          "signature": "sig", "signer": "key"})
    for path, url in (
        ("/v1/jobs", "/v1/jobs"),
        ("/v1/jobs/history", "/v1/jobs/history"),
        ("/v1/jobs/{job_id}", f"/v1/jobs/{job_id}"),
        ("/v1/billing/account", "/v1/billing/account"),
        ("/v1/billing/usage", "/v1/billing/usage"),
        ("/v1/billing/jobs/{job_id}", f"/v1/billing/jobs/{job_id}"),
        ("/v1/receipts/{receipt_hash}", f"/v1/receipts/{'ab' * 32}"),
        ("/v1/private-inference/nodes", "/v1/private-inference/nodes"),
        ("/v1/jobs/{job_id}", "/v1/jobs/job_missing"),  # the problem shape
    ):
        check(schema, path, "get", alice_api.get(url))
    refused = factories.api_client(factories.customer("poor", funds=0)).post(
        "/v1/jobs", {"model": "echo", "input": 1}, format="json")
    assert refused.status_code == 402
    check(schema, "/v1/jobs", "post", refused)
    check(schema, "/v1/jobs", "post", alice_api.post("/v1/jobs", {"model": "echo"}, format="json"))


def test_the_docs_page_is_served_without_a_cdn(client):
    page = client.get("/v1/docs/")
    assert page.status_code == 200 and b"swagger" in page.content.lower()
    assert b"cdn.jsdelivr" not in page.content, "the assets are served from this marketplace"


def test_the_schema_says_estimated_cost_is_a_number_and_its_wei_a_string(schema):
    components = schema["components"]["schemas"]
    for name in ("JobSubmitted", "JobDetail"):
        fields = components[name]["properties"]
        assert fields["estimated_cost"]["type"] == "number", name
        assert fields["estimated_cost_wei"]["type"] == "string", name


def test_the_schema_documents_both_media_types_a_download_answers_in(schema):
    """A job submitted with output_config {"format": "text"} downloads as text/plain (schemathesis found
    the answer undocumented)."""
    content = schema["paths"]["/v1/jobs/{job_id}/download"]["get"]["responses"]["200"]["content"]
    assert set(content) == {"application/json", "text/plain"}
    assert content["text/plain"]["schema"] == {"type": "string"}
