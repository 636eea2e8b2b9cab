"""Every error is the JSON envelope with the right 4xx; no input produces a 5xx (garbage thrown at all routes)."""

from __future__ import annotations

import json
import string
from collections.abc import Callable

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.service_helpers import KEYS, ApiClient, TrainedModel, assert_error

pytest_plugins = ["tests.service_helpers"]


#: Every route with a placeholder for its path id; (method, path template).
ROUTES = [
    ("GET", "/v1/customers/{id}/recommendations"),
    ("POST", "/v1/recommendations"),
    ("GET", "/v1/items/{id}/similar"),
    ("GET", "/v1/items/{id}"),
    ("PATCH", "/v1/items/{id}"),
    ("GET", "/v1/popular"),
    ("POST", "/v1/events"),
    ("GET", "/v1/customers/{id}/profile"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/active"),
    ("PUT", "/v1/models/active"),
    ("POST", "/v1/models/rollback"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
]
JUNK_IDS = ["%00", "%ff%fe", "..", "%2e%2e", "a%2Fb", "%F0%9F%94%A5", "x" * 300, "%20", "%7B%7D", "'--",
            "<script>", "%E2%80%AE", "\u0000".encode().hex(), "%C0%AF", "%25", "%0d%0aSet-Cookie:x"]
JUNK_QUERIES = ["n=", "n=-5", "n=1e3", "n=%00", "n=NaN", "n=Infinity", "n=10&n=abc", "exclude=" + "a," * 600,
                "exclude_purchased=maybe", "category=" + "c" * 300, "country=%ff", "exclude=%00",
                "n=" + "9" * 5000, "n=%EF%BC%91"]
JUNK_BODIES: list[tuple[bytes, str]] = [
    (b"", "application/json"), (b"{", "application/json"), (b"null", "application/json"),
    (b"[]", "application/json"), (b"[[[[[[[[[[" * 200, "application/json"), (b"\xff\xfe\x00", "application/json"),
    (b'{"items": [NaN]}', "application/json"), (b'{"n": 1e999}', "application/json"),
    (b'{"active": "perhaps"}', "application/json"), (b'{"version": {"$gt": ""}}', "application/json"),
    (b'{"events": "lots"}', "application/json"), (b'"just a string"', "application/json"),
    (b"items=1&n=2", "application/x-www-form-urlencoded"), (b"<xml/>", "text/xml"),
    (b'{"events": [{"event_id": 1e400}]}', "application/json"),
    (json.dumps({"items": [{"deep": [1] * 10}] * 50}).encode(), "application/json"),
    (("{" + '"a":' * 5000 + "1" + "}" * 5000).encode(), "application/json"),
]


def assert_no_server_error(response, what: str) -> None:
    assert response.status_code < 500, f"{what}: {response.status_code} {response.get_data(as_text=True)[:300]}"
    if response.status_code >= 400:
        assert_error(response, response.status_code)


@pytest.fixture
def admin(app: Flask) -> ApiClient:
    return ApiClient(app, key=KEYS["admin"])


def test_garbage_path_ids_and_query_strings(admin: ApiClient):
    for method, template in ROUTES:
        for junk in JUNK_IDS:
            url = template.replace("{id}", junk)
            assert_no_server_error(admin.open(url, method=method), f"{method} {url}")
        for query in JUNK_QUERIES:
            url = template.replace("{id}", "12347") + "?" + query
            assert_no_server_error(admin.open(url, method=method), f"{method} {url}")


def test_garbage_bodies(admin: ApiClient):
    for method, template in ROUTES:
        url = template.replace("{id}", "85123A")
        for body, content_type in JUNK_BODIES:
            response = admin.open(url, method=method, data=body, content_type=content_type)
            assert_no_server_error(response, f"{method} {url} {body[:40]!r}")


def test_garbage_headers(admin: ApiClient):
    for headers in ({"Authorization": "Bearer"}, {"Authorization": "\u00ff" * 2000}, {"X-API-Key": ""},
                    {"Content-Type": "application/json; charset=ebcdic"}, {"Accept": "text/html"},
                    {"Content-Length": "abc"}):
        for method, template in ROUTES:
            url = template.replace("{id}", "12347")
            assert_no_server_error(admin.open(url, method=method, headers=headers, key=None), f"{url} {headers}")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
event_like = st.fixed_dictionaries({}, optional={
    "event_id": st.text(max_size=10) | st.integers(), "customer_id": st.text(max_size=10) | st.none(),
    "type": st.sampled_from(["view", "purchase", "click", "conversion", "bogus", ""]),
    "timestamp": st.text(max_size=30) | st.sampled_from(["2011-12-10T10:00:00Z", "2011-12-10", "0001-01-01T00:00:00"]),
    "item_id": st.text(max_size=10) | st.none(), "quantity": json_values, "price": json_values,
    "decision_id": json_values,
})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), path_id=st.text(min_size=1, max_size=40),
       query=st.dictionaries(st.sampled_from(["n", "exclude", "exclude_purchased", "category", "country",
                                              "exclude_category", "x"]), st.text(max_size=30), max_size=4),
       body=json_values | st.fixed_dictionaries({"events": st.lists(event_like, max_size=3)})
       | st.fixed_dictionaries({"items": json_values, "n": json_values}))
def test_random_input_never_produces_a_server_error(admin: ApiClient, route: tuple[str, str], path_id: str,
                                                     query: dict[str, str], body: object):
    method, template = route
    url = template.replace("{id}", path_id.replace("/", "_").replace("?", "_").replace("#", "_"))
    kwargs = {"query_string": query}
    if method in ("POST", "PATCH", "PUT"):
        kwargs["json"] = body
    assert_no_server_error(admin.open(url, method=method, **kwargs), f"{method} {url} {query} {body!r}"[:300])


def test_unknown_route_and_method(api: ApiClient):
    assert_error(api.get("/v2/anything"), 404, "not_found")
    response = api.open("/v1/popular", method="DELETE")
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


def test_body_too_large_is_413(make_app: Callable[..., Flask], retail: TrainedModel):
    api = ApiClient(make_app(TAILOR_MAX_BODY_BYTES="1000"))
    big = {"items": ["x" * 100] * 20}
    assert_error(api.post("/v1/recommendations", json=big), 413, "payload_too_large")


def test_non_json_body_is_415(api: ApiClient):
    error = assert_error(api.post("/v1/recommendations", data="items=1", content_type="text/plain"), 415,
                         "unsupported_media_type")
    assert "Content-Type" in error["details"]["headers"]


def test_malformed_json_is_400(api: ApiClient):
    error = assert_error(api.post("/v1/recommendations", data='{"items": [', content_type="application/json"),
                         400, "invalid_input")
    assert "json" in error["details"]


def test_weird_path_ids(api: ApiClient):
    assert_error(api.get("/v1/customers/a%00b/recommendations"), 400, "invalid_input")
    assert_error(api.get("/v1/customers/" + "x" * 300 + "/recommendations"), 400, "invalid_input")
    body = api.get("/v1/customers/%F0%9F%94%A5%E2%80%AE/recommendations").get_json()
    assert body["source"] == "popular" and body["customer_id"] == "\U0001f525\u202e"
    assert_error(api.get("/v1/items/%ff/similar"), 404, "not_found")


def test_unexpected_exceptions_become_a_logged_json_500(api: ApiClient, app: Flask,
                                                        caplog: pytest.LogCaptureFixture):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    app.extensions["tailor"].engine.popular = broken
    error = assert_error(api.get("/v1/popular"), 500, "internal_error")
    assert "boom" not in error["message"]
    assert "RuntimeError: boom" in caplog.text


def test_error_messages_are_printable(api: ApiClient):
    error = assert_error(api.get("/v1/popular?n=" + string.punctuation), 400)
    assert error["message"].isprintable()


#: Routes that declare no query parameter, one valid-looking request each: (method, path, JSON body or None).
NO_QUERY_ROUTES = [
    ("GET", "/v1/customers/12347/profile", None), ("GET", "/v1/models", None), ("GET", "/v1/models/active", None),
    ("PUT", "/v1/models/active", {"version": "no-such-version"}), ("POST", "/v1/events", {"events": []}),
    ("POST", "/v1/audiences", {"items": ["85123A"], "size": 1}), ("GET", "/v1/promotions", None),
    ("GET", "/v1/promotions/p1", None), ("GET", "/v1/promotions/p1/report", None), ("GET", "/v1/messages", None),
    ("GET", "/v1/messages/banner", None), ("GET", "/v1/messages/banner/report", None),
    ("POST", "/v1/recommendations", {"items": ["85123A"]}), ("POST", "/v1/customers/12347/rank", {"items": ["85123A"]}),
    ("PATCH", "/v1/items/85123A", {"active": True}),
]


def test_routes_without_a_query_schema_refuse_unknown_query_parameters(admin: ApiClient):
    """`?zz=1` is the same 400 naming it everywhere, as on a route with a query schema (GET /v1/popular)."""
    reference = assert_error(admin.get("/v1/popular?zz=1"), 400, "invalid_input")
    for method, path, body in NO_QUERY_ROUTES:
        error = assert_error(admin.open(path + "?zz=1&yy=", method=method, json=body), 400, "invalid_input")
        assert error["message"] == reference["message"], (method, path)
        assert error["details"] == {"query": {"zz": reference["details"]["query"]["zz"],
                                              "yy": reference["details"]["query"]["zz"]}}, (method, path, error)
        plain = admin.open(path, method=method, json=body)  # without a query string: answered as before
        assert plain.status_code != 400 or "query" not in plain.get_json()["error"]["details"], (method, path)


def test_an_unknown_query_parameter_is_checked_after_the_key(admin: ApiClient):
    assert_error(admin.get("/v1/models?zz=1", key=None), 401, "unauthorized")
    assert_error(admin.get("/v1/promotions?zz=1", key=KEYS["read"]), 403, "forbidden")
    assert_error(admin.post("/v1/events?zz=1", key="wrong-key", json={"events": []}), 401, "unauthorized")


def test_every_v1_route_refuses_an_unknown_query_parameter(admin: ApiClient, app: Flask):
    """The rule holds for every /v1 route, whether or not it declares query parameters (new ones too)."""
    checked = 0
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/v1/"):
            continue
        path = rule.rule
        for name in rule.arguments:
            path = path.replace(f"<{name}>", "12347")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            error = assert_error(admin.open(path + "?zz=1", method=method), 400, "invalid_input")
            assert "zz" in error["details"]["query"], (method, path, error)
            checked += 1
    assert checked >= 27  # every /v1 operation of today


def test_non_api_routes_take_any_query_string(admin: ApiClient):
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs/", "/console"):
        response = admin.get(path + "?zz=1")
        assert response.status_code == 200, (path, response.status_code)


def test_the_openapi_document_states_the_query_rule(admin: ApiClient):
    spec = admin.get("/openapi.json").get_json()
    assert "an unknown one is a 400" in spec["info"]["description"]
    for route, path in spec["paths"].items():
        for method, operation in path.items():
            if route.startswith("/v1/") and isinstance(operation, dict) and "responses" in operation:
                assert "400" in operation["responses"], (method, route)
