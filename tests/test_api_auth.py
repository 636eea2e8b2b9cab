"""API keys and scopes: 401 for a missing or wrong key, 403 for a key without the scope, public reads."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from flask import Flask

from service.api.auth import KeyRing, check
from service.domain.errors import Forbidden, Unauthorized
from settings import ConfigError, Settings, parse_api_keys
from tests.service_helpers import KEYS, ApiClient, TrainedModel, assert_error, event

pytest_plugins = ["tests.service_helpers"]


READ_URLS = ["/v1/customers/12347/recommendations", "/v1/popular", "/v1/customers/12347/profile",
             "/v1/models", "/v1/models/active"]


@pytest.fixture
def anonymous(app: Flask) -> ApiClient:
    return ApiClient(app, key=None)


@pytest.mark.parametrize("url", READ_URLS)
def test_missing_key_is_401(anonymous: ApiClient, url: str):
    assert_error(anonymous.get(url), 401, "unauthorized")


@pytest.mark.parametrize("headers", [
    {"Authorization": "Bearer not-a-key"},
    {"Authorization": "Bearer " + KEYS["read"] + "x"},
    {"Authorization": "Basic " + KEYS["read"]},
    {"X-API-Key": KEYS["read"][:-1]},
    {"Authorization": "Bearer ключ-🔑"},
    {"X-API-Key": "\u00e9\u00e8"},
])
def test_wrong_key_is_401(anonymous: ApiClient, headers: dict[str, str]):
    assert_error(anonymous.get("/v1/popular", headers=headers), 401, "unauthorized")


@pytest.mark.parametrize("headers", [
    {"Authorization": f"Bearer {KEYS['read']}"},
    {"Authorization": f"bearer   {KEYS['read']}  "},
    {"X-API-Key": KEYS["read"]},
    {"X-API-Key": KEYS["admin"]},
])
def test_key_in_either_header(anonymous: ApiClient, headers: dict[str, str]):
    assert anonymous.get("/v1/popular", headers=headers).status_code == 200


@pytest.mark.parametrize("scope, status", [("read", 403), ("marketing", 403), ("admin", 200)])
def test_admin_endpoints_need_the_admin_scope(anonymous: ApiClient, retail: TrainedModel, scope: str, status: int):
    item = retail.popular_items()[0]
    response = anonymous.patch(f"/v1/items/{item}", json={"active": True}, key=KEYS[scope])
    assert response.status_code == status, response.get_data(as_text=True)
    if status == 403:
        error = assert_error(response, 403, "forbidden")
        assert error["details"] == {"required_scope": "admin", "key_scope": scope}
        assert KEYS[scope] not in response.get_data(as_text=True)


@pytest.mark.parametrize("scope", ["read", "marketing", "admin"])
def test_higher_scopes_include_read(anonymous: ApiClient, scope: str):
    assert anonymous.get("/v1/popular", key=KEYS[scope]).status_code == 200
    ok = anonymous.post("/v1/events", json=[event(f"e-{scope}", "c", "click")], key=KEYS[scope])
    assert ok.status_code == 200


def test_public_read(make_app: Callable[..., Flask], retail: TrainedModel):
    anonymous = ApiClient(make_app(TAILOR_PUBLIC_READ="true"), key=None)
    for url in READ_URLS:
        assert anonymous.get(url).status_code == 200, url
    assert anonymous.post("/v1/events", json=[event("pub-1", "c", "click")]).status_code == 200
    item = retail.popular_items()[0]
    assert_error(anonymous.patch(f"/v1/items/{item}", json={"active": False}), 401, "unauthorized")
    assert_error(anonymous.get("/v1/popular", key="wrong"), 401, "unauthorized")


def test_probes_and_docs_need_no_key(anonymous: ApiClient):
    for url in ("/healthz", "/readyz", "/openapi.json", "/docs/"):
        assert anonymous.get(url).status_code == 200, url


def test_auth_is_checked_before_input_validation(anonymous: ApiClient):
    assert_error(anonymous.get("/v1/customers/x/recommendations?n=0"), 401)
    assert_error(anonymous.patch("/v1/items/x", data="{", content_type="application/json",
                                 key=KEYS["read"]), 403)


def test_keys_never_appear_in_logs(make_app: Callable[..., Flask], retail: TrainedModel,
                                   caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    api = ApiClient(make_app(), key=None)
    api.get("/v1/popular", key=KEYS["read"])
    api.get("/v1/popular", key="wrong-secret-attempt")
    api.patch("/v1/items/x", json={"active": False}, key=KEYS["marketing"])
    text = caplog.text
    for secret in (*KEYS.values(), "wrong-secret-attempt"):
        assert secret not in text


def test_key_ring_compares_against_every_key():
    ring = KeyRing.from_config(parse_api_keys("a:read,b:admin,a:b:marketing"), public_read=False)
    assert ring.scope_of("a") == "read"
    assert ring.scope_of("a:b") == "marketing"
    assert ring.scope_of("b") == "admin"
    assert ring.scope_of("c") is None
    check(ring, "b", "admin")
    with pytest.raises(Forbidden):
        check(ring, "a", "marketing")
    with pytest.raises(Unauthorized):
        check(ring, None, "read")


@pytest.mark.parametrize("value", ["k1", "k1:root", ":read", "k1:read,k2"])
def test_bad_key_configuration_is_refused_without_echoing_keys(value: str):
    with pytest.raises(ConfigError) as info:
        Settings.load({"TAILOR_API_KEYS": value})
    assert "TAILOR_API_KEYS=***" in str(info.value)
    assert "k1" not in str(info.value).replace("TAILOR_API_KEYS", "")
