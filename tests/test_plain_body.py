"""``plain_body``: plain JSON bodies of the hot endpoints (basket, rank, events) skip webargs' and
flask-smorest's wrappers, and get exactly the answer the full path gives; anything else takes the full path."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st

from service.api.common_schemas import are_plain_ids, is_plain_id
from service.api.events_schemas import EventBatch
from service.api.recommendations_schemas import BasketRequest, RankRequest
from tests.service_helpers import KEYS, ApiClient, TrainedModel, assert_error

pytest_plugins = ["tests.service_helpers"]


@pytest.fixture
def schema_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the request schemas whose ``load`` ran (the full path's parsing)."""
    calls: list[str] = []
    for schema in (BasketRequest, RankRequest, EventBatch):
        def counting(self: Any, data: Any, *args: Any, _load: Any = schema.load, _name: str = schema.__name__,
                     **kwargs: Any) -> Any:
            calls.append(_name)
            return _load(self, data, *args, **kwargs)

        monkeypatch.setattr(schema, "load", counting)
    return calls


def full_path_answer(app: Flask, endpoint: str, path: str, body: Any, **view_args: str) -> Any:
    """What the route's full path (webargs, flask-smorest, the schema) answers to ``body``."""
    full = app.view_functions[endpoint].full_path
    with app.test_request_context(path, method="POST", json=body,
                                  headers={"Authorization": f"Bearer {KEYS['read']}"}):
        return full(**view_args).get_json()


def test_plain_recommendation_bodies_skip_the_schema_and_answer_as_the_full_path(
        api: ApiClient, app: Flask, retail: TrainedModel, schema_loads: list[str]) -> None:
    customer = retail.busiest_customer()
    popular = retail.popular_items()
    own = sorted(retail.customer_items(customer))[:3]
    cases = [
        ("recommendations.basket_recommendations", "/v1/recommendations",
         {"items": popular[:3], "n": 5, "exclude": popular[3:4]}, {}, "BasketRequest"),
        ("recommendations.basket_recommendations", "/v1/recommendations", {"items": own}, {}, "BasketRequest"),
        ("recommendations.rank_items", f"/v1/customers/{customer}/rank",
         {"items": [*popular[:8], *own, "not-an-item"]}, {"customer_id": customer}, "RankRequest"),
    ]
    for endpoint, path, body, view_args, schema in cases:
        fast = api.post(path, json=body)
        assert fast.status_code == 200, fast.get_data(as_text=True)
        assert schema_loads == [], path
        assert full_path_answer(app, endpoint, path, body, **view_args) == fast.get_json()
        assert schema_loads == [schema]
        schema_loads.clear()


def test_a_plain_event_batch_skips_the_schema_and_is_stored_as_by_the_full_path(
        api: ApiClient, app: Flask, retail: TrainedModel, schema_loads: list[str]) -> None:
    customer, item = retail.busiest_customer(), retail.popular_items()[0]

    def batch(prefix: str) -> dict[str, Any]:
        return {"events": [{"event_id": f"{prefix}-{k}", "customer_id": customer, "item_id": item, "type": "view",
                            "timestamp": "2011-12-09T12:00:00Z"} for k in range(3)]}

    fast = api.post("/v1/events", json=batch("fast"))
    assert fast.status_code == 200 and schema_loads == []
    full = full_path_answer(app, "events.post_events", "/v1/events", batch("full"))
    assert full == fast.get_json() and fast.get_json()["accepted"] == 3
    assert schema_loads == ["EventBatch"]
    again = api.post("/v1/events", json=batch("full")).get_json()  # the full path's events were stored
    assert again["duplicates"] == 3 and again["accepted"] == 0


def test_other_bodies_take_the_full_path_and_its_errors(api: ApiClient, retail: TrainedModel,
                                                        schema_loads: list[str]) -> None:
    item = retail.popular_items()[0]
    with_null = api.post("/v1/recommendations", json={"items": [item], "n": 3, "category": None})
    assert with_null.status_code == 200 and schema_loads == ["BasketRequest"]
    assert with_null.get_json() == api.post("/v1/recommendations", json={"items": [item], "n": 3}).get_json()
    bad_n = api.post("/v1/recommendations", json={"items": [item], "n": 0})
    assert_error(bad_n, 400)
    assert "n" in bad_n.get_json()["error"]["details"]["json"]
    assert_error(api.post("/v1/recommendations", data="items=1", content_type="text/plain"), 415)
    assert_error(api.post("/v1/recommendations", data=b"{", content_type="application/json"), 400)
    assert_error(api.post(f"/v1/customers/{retail.busiest_customer()}/rank", json={"items": []}), 400)


def test_the_key_is_checked_before_a_plain_body_is_read(make_app: Any, retail: TrainedModel,
                                                        schema_loads: list[str]) -> None:
    private = ApiClient(make_app(TAILOR_PUBLIC_READ="false"), key=None)
    assert_error(private.post("/v1/recommendations", json={"items": [retail.popular_items()[0]]}), 401)
    assert_error(private.post("/v1/events", data=b"{", content_type="application/json"), 401)
    assert schema_loads == []


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=300), st.integers(), st.none(), st.just(" \t"), st.just("")),
                max_size=8))
def test_are_plain_ids_is_is_plain_id_of_every_value(values: list[Any]) -> None:
    assert are_plain_ids(values) == all(is_plain_id(value) for value in values)
