"""Items: metadata, and deactivation (admin) that removes an item from every answer of every process."""

from __future__ import annotations

import json
from collections.abc import Callable

import redis
from flask import Flask

from redis_state import keys
from tests.service_helpers import KEYS, ApiClient, TrainedModel, assert_error, event, item_ids, wait_for

pytest_plugins = ["tests.service_helpers"]



def every_answer(api: ApiClient, retail: TrainedModel, anchor: str) -> dict[str, list[str]]:
    customer = retail.busiest_customer()
    api.post("/v1/events", json=[event("sess-1", "visitor", "view", anchor)])
    return {
        "customer": item_ids(api.get(f"/v1/customers/{customer}/recommendations?n=100")),
        "discovery": item_ids(api.get(f"/v1/customers/{customer}/recommendations?n=100&exclude_purchased=true")),
        "unknown": item_ids(api.get("/v1/customers/nobody/recommendations?n=100")),
        "session": item_ids(api.get("/v1/customers/visitor/recommendations?n=100")),
        "similar": item_ids(api.get(f"/v1/items/{anchor}/similar?n=100")),
        "basket": item_ids(api.post("/v1/recommendations", json={"items": [anchor], "n": 100})),
        "popular": item_ids(api.get("/v1/popular?n=100")),
    }


def test_get_item(api: ApiClient, retail: TrainedModel):
    item = retail.popular_items()[0]
    body = api.get(f"/v1/items/{item}").get_json()
    meta = next(i for i in retail.artifact.items if i["item_id"] == item)
    assert body == {**meta, "active": True, "model_version": retail.version}
    assert_error(api.get("/v1/items/NOPE"), 404, "not_found")


def test_inactive_item_never_appears_in_any_answer(make_app: Callable[..., Flask], retail: TrainedModel,
                                                   redis_client: redis.Redis):
    api = ApiClient(make_app())
    admin = ApiClient(api.app, key=KEYS["admin"])
    anchor = retail.popular_items()[0]
    before = every_answer(api, retail, anchor)
    victims = {source: ids[0] for source, ids in before.items()}
    assert all(victims.values())
    for item in set(victims.values()):
        response = admin.patch(f"/v1/items/{item}", json={"active": False})
        assert response.status_code == 200 and response.get_json()["active"] is False
    assert json.loads(redis_client.hget(keys.ITEM_OVERRIDES, victims["customer"]))["active"] is False
    after = every_answer(api, retail, anchor)
    for source, ids in after.items():
        assert not set(ids) & set(victims.values()), source
    assert api.get(f"/v1/items/{victims['popular']}").get_json()["active"] is False

    admin.patch(f"/v1/items/{victims['popular']}", json={"active": True})
    assert victims["popular"] in item_ids(api.get("/v1/popular?n=100"))


def test_deactivation_reaches_other_processes_within_a_second(make_app: Callable[..., Flask],
                                                              retail: TrainedModel):
    here = ApiClient(make_app(), key=KEYS["admin"])
    there = ApiClient(make_app(TAILOR_MODEL_POLL_S="0.25"))
    top = item_ids(there.get("/v1/popular?n=3"))[0]
    assert here.patch(f"/v1/items/{top}", json={"active": False}).status_code == 200
    took = wait_for(lambda: top not in item_ids(there.get("/v1/popular?n=3")), timeout=3.0)
    assert took < 1.5


def test_patch_validation(make_app: Callable[..., Flask], retail: TrainedModel):
    admin = ApiClient(make_app(), key=KEYS["admin"])
    item = retail.popular_items()[0]
    for body in ({}, {"active": "sometimes"}, {"active": None}, {"active": True, "title": "x"}, []):
        assert_error(admin.patch(f"/v1/items/{item}", json=body), 400, "invalid_input")
    assert_error(admin.patch("/v1/items/NOT-IN-CATALOGUE", json={"active": False}), 404, "not_found")
    assert_error(admin.patch(f"/v1/items/{item}", data="active=false",
                             content_type="application/x-www-form-urlencoded"), 415)
