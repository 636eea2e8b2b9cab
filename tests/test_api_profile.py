"""Customer profiles and journey stages."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from flask import Flask

from scoring.history import SECONDS_PER_DAY
from service.domain.profile import StageRules, journey_stage
from tests.service_helpers import ApiClient, TrainedModel, assert_error, event

pytest_plugins = ["tests.service_helpers"]


def test_known_customer_profile_matches_the_training_data(api: ApiClient, retail: TrainedModel):
    a = retail.artifact
    customer = retail.busiest_customer()
    row = int(np.flatnonzero(a.customer_ids == customer)[0])
    body = api.get(f"/v1/customers/{customer}/profile").get_json()
    assert body["known"] is True and body["model_version"] == retail.version
    assert body["orders"] == int(a.customers.orders[row])
    assert body["spend"] == pytest.approx(float(a.customers.spend[row]))
    assert body["country"] == a.customers.countries[int(a.customers.country[row])]
    assert body["first_purchase"].startswith(
        np.datetime_as_string(np.datetime64(int(a.customers.first_day[row] * SECONDS_PER_DAY), "s"))[:16])
    assert body["journey_stage"] == "repeat"
    top = body["top_items"]
    assert len(top) == 5 and top[0]["orders"] >= top[-1]["orders"]
    assert {t["item_id"] for t in top} <= retail.customer_items(customer)
    assert body["top_categories"] == []  # the Online Retail sample has no categories


def test_unknown_customer_is_new(api: ApiClient):
    body = api.get("/v1/customers/someone-new/profile").get_json()
    assert body["known"] is False and body["journey_stage"] == "new" and body["orders"] == 0
    assert body["first_purchase"] is None and body["days_since_last_purchase"] is None


def test_stage_thresholds_are_configurable(make_app: Callable[..., Flask], retail: TrainedModel):
    customer = retail.busiest_customer()
    strict = ApiClient(make_app(TAILOR_LAPSED_DAYS="1", TAILOR_REPEAT_MIN_ORDERS="1000"))
    days = strict.get(f"/v1/customers/{customer}/profile").get_json()["days_since_last_purchase"]
    assert days > 1
    assert strict.get(f"/v1/customers/{customer}/profile").get_json()["journey_stage"] == "lapsed"
    lenient = ApiClient(make_app(TAILOR_LAPSED_DAYS="100000", TAILOR_REPEAT_MIN_ORDERS="1000"))
    assert lenient.get(f"/v1/customers/{customer}/profile").get_json()["journey_stage"] == "first-time buyer"
    wall = ApiClient(make_app(TAILOR_CLOCK="wall"))
    assert wall.get(f"/v1/customers/{customer}/profile").get_json()["journey_stage"] == "lapsed"


def test_profile_categories(make_app: Callable[..., Flask], models, redis_client):
    from training.publish import publish_model

    publish_model(redis_client, models.generic.path)
    api = ApiClient(make_app())
    body = api.get("/v1/customers/c001/profile").get_json()
    assert body["top_categories"] and body["top_categories"][0]["category"] in {"home", "kitchen"}
    assert all(t["category"] for t in body["top_items"])


@pytest.mark.parametrize("orders, last, now, stage", [
    (0, None, 100.0, "new"), (1, 90.0, 100.0, "first-time buyer"), (3, 90.0, 100.0, "repeat"),
    (3, 10.0, 100.0, "lapsed"), (1, 10.0, 100.0, "lapsed"),
])
def test_journey_stage_rules(orders: int, last: float | None, now: float, stage: str):
    assert journey_stage(orders, last, now, StageRules(lapsed_days=30, repeat_min_orders=2)) == stage


def test_profile_needs_redis(api: ApiClient, redis_server):
    assert api.get("/v1/customers/12347/profile").status_code == 200
    redis_server.stop()
    try:
        assert_error(api.get("/v1/customers/12347/profile"), 503, "redis_unavailable")
    finally:
        redis_server.start()


def test_profile_reflects_live_spend(api: ApiClient, retail: TrainedModel):
    item = retail.popular_items()[0]
    api.post("/v1/events", json=[event("p-1", "shopper", "purchase", item, "2011-12-12T10:00:00Z", quantity=4)])
    body = api.get("/v1/customers/shopper/profile").get_json()
    price = next(i["price"] for i in retail.artifact.items if i["item_id"] == item)
    assert body["spend"] == pytest.approx(round(4 * price, 2))
    assert body["last_purchase"] == "2011-12-12T10:00:00Z"
