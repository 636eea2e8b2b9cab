"""The OpenAPI document is valid, complete and matches what the endpoints answer; the docs page works offline."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from openapi_spec_validator import validate

from tests.service_helpers import ApiClient, TrainedModel

pytest_plugins = ["tests.service_helpers"]

EXPECTED = {
    ("/v1/customers/{customer_id}/recommendations", "get"), ("/v1/recommendations", "post"),
    ("/v1/popular", "get"), ("/v1/items/{item_id}/similar", "get"), ("/v1/items/{item_id}", "get"),
    ("/v1/items/{item_id}", "patch"), ("/v1/customers/{customer_id}/profile", "get"), ("/v1/events", "post"),
    ("/v1/models", "get"), ("/v1/models/active", "get"), ("/v1/models/active", "put"),
    ("/v1/models/rollback", "post"), ("/healthz", "get"), ("/readyz", "get"),
}


@pytest.fixture
def spec(api: ApiClient) -> dict:
    response = api.get("/openapi.json", key=None)
    assert response.status_code == 200
    return response.get_json()


def test_document_is_valid_openapi(spec: dict):
    validate(spec)
    assert spec["openapi"].startswith("3.")


def test_every_endpoint_is_documented_with_responses(spec: dict, app: Flask):
    methods = {"get", "put", "post", "patch", "delete"}
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops if method in methods}
    assert documented >= EXPECTED
    routes = {(re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower()) for rule in app.url_map.iter_rules()
              for method in rule.methods - {"HEAD", "OPTIONS"} if rule.rule.startswith(("/v1", "/healthz", "/readyz"))}
    assert routes == documented, "every route is documented and every documented path exists"
    for path, method in EXPECTED:
        responses = spec["paths"][path][method]["responses"]
        assert "200" in responses and "default" in responses, (path, method)


def test_scopes_and_errors_are_documented(spec: dict):
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerAuth"]["scheme"] == "bearer" and schemes["apiKeyHeader"]["name"] == "X-API-Key"
    recs = spec["paths"]["/v1/customers/{customer_id}/recommendations"]["get"]
    assert {"401", "403", "400"} <= set(recs["responses"])
    assert {} in recs["security"], "read endpoints may be public"
    patch = spec["paths"]["/v1/items/{item_id}"]["patch"]
    assert {} not in patch["security"] and "Scope: `admin`" in patch["description"]
    audiences = spec["paths"]["/v1/audiences"]["post"]["description"]
    assert "`due_for_reorder: true`" in audiences and audiences.endswith("Scope: `marketing`."), \
        "the docstring's description is kept beside the scope"
    error = spec["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["$ref"].endswith("ErrorBody")
    path_params = spec["paths"]["/v1/customers/{customer_id}/recommendations"].get("parameters", [])
    params = {p["name"] for p in recs["parameters"] + path_params}
    assert {"n", "exclude_purchased", "exclude", "category", "exclude_category", "customer_id"} <= params


def test_answers_match_the_documented_schemas(api: ApiClient, spec: dict, retail: TrainedModel):
    schemas = spec["components"]["schemas"]
    answer = api.get(f"/v1/customers/{retail.busiest_customer()}/recommendations?n=3").get_json()
    assert set(answer) <= set(schemas["Recommendations"]["properties"])
    assert set(answer["items"][0]) == set(schemas["RecommendedItem"]["properties"])
    profile = api.get(f"/v1/customers/{retail.busiest_customer()}/profile").get_json()
    assert set(profile) == set(schemas["Profile"]["properties"])


def test_docs_page_is_served_without_any_external_resource(api: ApiClient):
    page = api.get("/docs/", key=None)
    assert page.status_code == 200 and b"swagger-ui" in page.data
    html = page.get_data(as_text=True)
    assert "/openapi.json" in html
    assert not re.search(r"(src|href)=\"https?://", html)
    for asset in re.findall(r"(?:src|href)=\"(/docs/[^\"]+)\"", html):
        assert api.get(asset, key=None).status_code == 200, asset
    assert '"validatorUrl": null' in html
