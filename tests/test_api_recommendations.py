"""Recommendation endpoints against a real Redis and a model trained with the real pipeline."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
from flask import Flask

from tests.service_helpers import ApiClient, Models, TrainedModel, assert_error, item_ids
from training.publish import publish_model

pytest_plugins = ["tests.service_helpers"]

ITEM_FIELDS = {"item_id", "score", "title", "price", "category", "reason"}


def test_known_customer_gets_personalized_items_with_metadata_and_reasons(api: ApiClient, retail: TrainedModel):
    customer = retail.busiest_customer()
    response = api.get(f"/v1/customers/{customer}/recommendations?n=7")
    body = response.get_json()
    assert response.status_code == 200
    assert body["model_version"] == retail.version
    assert body["source"] == "personalized"
    assert body["customer_id"] == customer
    assert len(body["items"]) == 7
    for item in body["items"]:
        assert set(item) == ITEM_FIELDS
        assert item["title"]  # the Online Retail sample has descriptions for every item
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)
    reasons = [item["reason"] for item in body["items"] if item["reason"]]
    assert reasons, "an item-to-item model explains at least some items"
    assert all(r.startswith(("bought with ", "you buy this ", "you bought this")) for r in reasons)


def test_default_n_is_10_and_bounds_are_enforced(api: ApiClient, retail: TrainedModel):
    customer = retail.busiest_customer()
    assert len(item_ids(api.get(f"/v1/customers/{customer}/recommendations"))) == 10
    assert len(item_ids(api.get(f"/v1/customers/{customer}/recommendations?n=100"))) == 100
    for bad in ("0", "101", "-1", "abc", "1.5", "", "99999999999999999999999"):
        error = assert_error(api.get(f"/v1/customers/{customer}/recommendations?n={bad}"), 400, "invalid_input")
        assert "n" in error["details"]["query"]


def test_exclude_purchased_returns_only_discovery(api: ApiClient, retail: TrainedModel):
    customer = retail.busiest_customer()
    bought = retail.customer_items(customer)
    blended = item_ids(api.get(f"/v1/customers/{customer}/recommendations?n=20"))
    assert set(blended) & bought, "the blended ranking includes buy-again items"
    discovery = item_ids(api.get(f"/v1/customers/{customer}/recommendations?n=20&exclude_purchased=true"))
    assert len(discovery) == 20
    assert not set(discovery) & bought


def test_exclude_ids_are_never_returned(api: ApiClient, retail: TrainedModel):
    customer = retail.busiest_customer()
    first = item_ids(api.get(f"/v1/customers/{customer}/recommendations?n=5"))
    excluded = ",".join(first[:3])
    again = item_ids(api.get(f"/v1/customers/{customer}/recommendations?n=5&exclude={excluded},UNKNOWN-ID"))
    assert len(again) == 5
    assert not set(again) & set(first[:3])


def test_unknown_customer_without_events_gets_the_popular_list(api: ApiClient, retail: TrainedModel):
    body = api.get("/v1/customers/never-seen-before/recommendations?n=5").get_json()
    assert body["source"] == "popular"
    assert [i["item_id"] for i in body["items"]] == retail.popular_items()[:5]
    assert all(i["reason"] == "popular right now" for i in body["items"])


def test_category_filters(make_app: Callable[..., Flask], models: Models, redis_client: redis.Redis):
    publish_model(redis_client, models.generic.path)
    api = ApiClient(make_app())
    categories = {item["item_id"]: item["category"] for item in models.generic.artifact.items}
    assert {"home", "kitchen"} <= set(categories.values())

    only = api.get("/v1/customers/c001/recommendations?n=20&category=kitchen").get_json()
    assert only["items"] and all(i["category"] == "kitchen" for i in only["items"])
    assert all(i["category"] == categories[i["item_id"]] for i in only["items"])

    without = api.get("/v1/customers/c001/recommendations?n=20&exclude_category=kitchen").get_json()
    assert without["items"] and all(i["category"] != "kitchen" for i in without["items"])

    assert item_ids(api.get("/v1/customers/c001/recommendations?category=no-such-category")) == []
    popular = api.get("/v1/popular?n=20&category=home").get_json()
    assert popular["items"] and all(i["category"] == "home" for i in popular["items"])


def test_similar_items(api: ApiClient, retail: TrainedModel):
    anchor = retail.popular_items()[0]
    body = api.get(f"/v1/items/{anchor}/similar?n=5").get_json()
    assert body["source"] == "similar-items"
    assert body["item_id"] == anchor
    assert body["model_version"] == retail.version
    assert 0 < len(body["items"]) <= 5
    assert anchor not in [i["item_id"] for i in body["items"]]
    assert all(set(i) == ITEM_FIELDS and i["reason"] for i in body["items"])


def test_similar_items_reason_names_the_anchor_by_its_title(api: ApiClient, retail: TrainedModel):
    """Like every other reason, "customers who bought TITLE (ID) also bought this", not the bare id."""
    anchor = retail.popular_items()[0]
    index = retail.artifact.item_ids.tolist().index(anchor)
    title = str(retail.artifact.items[index]["title"]).strip()
    assert title
    for _ in range(2):  # the memoised answer says the same
        body = api.get(f"/v1/items/{anchor}/similar?n=5").get_json()
        assert {i["reason"] for i in body["items"]} == {f"customers who bought {title} ({anchor}) also bought this"}


def test_similar_items_of_an_unknown_item_is_404(api: ApiClient):
    error = assert_error(api.get("/v1/items/NOT-AN-ITEM/similar"), 404, "not_found")
    assert error["details"] == {"item_id": "NOT-AN-ITEM"}


def test_basket_recommendations_exclude_the_basket(api: ApiClient, retail: TrainedModel):
    basket = retail.popular_items()[:2]
    response = api.post("/v1/recommendations", json={"items": basket, "n": 6})
    body = response.get_json()
    assert response.status_code == 200
    assert body["source"] == "basket"
    assert body["model_version"] == retail.version
    assert len(body["items"]) == 6
    assert not {i["item_id"] for i in body["items"]} & set(basket)
    assert any((i["reason"] or "").endswith("in your basket") for i in body["items"])


def test_basket_of_unknown_items_falls_back_to_popular(api: ApiClient, retail: TrainedModel):
    body = api.post("/v1/recommendations", json={"items": ["nope-1", "nope-2"]}).get_json()
    assert body["source"] == "popular"
    assert len(body["items"]) == 10


@pytest.mark.parametrize("payload, field", [
    ({"n": 5}, "items"),
    ({"items": "85123A"}, "items"),
    ({"items": [1, 2]}, "items"),
    ({"items": ["85123A"], "n": 0}, "n"),
    ({"items": ["85123A"], "n": "5"}, "n"),
    ({"items": ["85123A"], "n": 5.5}, "n"),
    ({"items": ["85123A"], "unexpected": True}, "unexpected"),
    ({"items": ["x"] * 201}, "items"),
])
def test_basket_validation(api: ApiClient, payload: dict, field: str):
    error = assert_error(api.post("/v1/recommendations", json=payload), 400, "invalid_input")
    assert field in error["details"]["json"]


def test_popular_global_and_by_country(api: ApiClient, retail: TrainedModel):
    body = api.get("/v1/popular?n=5").get_json()
    assert body["source"] == "popular" and body["segment"] == "global"
    assert [i["item_id"] for i in body["items"]] == retail.popular_items()[:5]
    countries = retail.artifact.popular["by_country"]
    assert "United Kingdom" in countries
    uk = api.get("/v1/popular?n=5&country=United%20Kingdom").get_json()
    assert uk["segment"] == "country:United Kingdom"
    expected = [str(retail.artifact.item_ids[i]) for i in countries["United Kingdom"]["items"][:5]]
    assert [i["item_id"] for i in uk["items"]] == expected
    assert all(i["reason"] == "popular in United Kingdom" for i in uk["items"])
    nowhere = api.get("/v1/popular?n=5&country=Atlantis").get_json()
    assert nowhere["segment"] == "global"


def test_popular_matches_country_and_segment_case_insensitively(api: ApiClient, retail: TrainedModel):
    """`country=united kingdom` is the United Kingdom's list, not a silent fall back to the global one, and
    the answer says which list answered (as the data spells it)."""
    exact = api.get("/v1/popular?n=5&country=United%20Kingdom").get_json()
    for spelling in ("united%20kingdom", "UNITED%20KINGDOM", "%20united%20Kingdom%20"):
        body = api.get(f"/v1/popular?n=5&country={spelling}").get_json()
        assert body["segment"] == "country:United Kingdom", spelling
        assert body["items"] == exact["items"]
    by_segment = api.get("/v1/popular?n=5&segment=Country:united%20kingdom").get_json()
    assert by_segment["segment"] == "country:United Kingdom"
    assert by_segment["items"] == exact["items"]


def test_repeated_queries_are_parsed_alike_and_invalid_ones_stay_rejected(api: ApiClient, retail: TrainedModel):
    """The parser memoises valid query strings: repeats must answer exactly like the first request, an
    invalid query must be rejected every time, and a list argument must not leak between requests."""
    customer = retail.busiest_customer()
    first = item_ids(api.get(f"/v1/customers/{customer}/recommendations?n=5"))
    excluded = first[:2]
    query = f"/v1/customers/{customer}/recommendations?n=5&exclude={','.join(excluded)}"
    for _ in range(3):
        again = item_ids(api.get(query))
        assert len(again) == 5 and not set(excluded) & set(again)
        assert item_ids(api.get(f"/v1/customers/{customer}/recommendations?n=5")) == first
    for _ in range(2):
        assert_error(api.get(f"/v1/customers/{customer}/recommendations?n=0"), 400, "invalid_input")
        assert_error(api.get(f"/v1/customers/{customer}/recommendations?n=five"), 400, "invalid_input")


def test_a_repeated_single_valued_query_parameter_is_400_naming_it(api: ApiClient, retail: TrainedModel):
    """`?n=1&n=5` is a 400 naming `n` (not the first value kept silently); list parameters keep their repeats."""
    customer = retail.busiest_customer()
    url = f"/v1/customers/{customer}/recommendations"
    assert len(item_ids(api.get(url + "?n=1"))) == 1  # a valid query, now remembered by the parser
    for path, query, name in ((url, "n=1&n=5", "n"), (url, "category=a&category=b", "category"),
                              (url, "exclude_category=a&exclude_category=b", "exclude_category"),
                              (url, "n=3&exclude_purchased=true&exclude_purchased=false", "exclude_purchased"),
                              ("/v1/popular", "country=France&country=Germany", "country"),
                              ("/v1/trending", "window_hours=1&window_hours=2", "window_hours"),
                              (f"/v1/customers/{customer}/promotions", "preview=true&preview=false", "preview")):
        for _ in range(2):  # never remembered as valid
            error = assert_error(api.get(f"{path}?{query}"), 400, "invalid_input")
            assert error["details"] == {"query": {name: ["Given more than once; send one value."]}}, (query, error)
    first, second = item_ids(api.get(url + "?n=2"))
    repeated = item_ids(api.get(f"{url}?n=5&exclude={first}&exclude={second}"))
    assert len(repeated) == 5 and first not in repeated and second not in repeated
    assert item_ids(api.get(f"{url}?n=5&exclude={first},{second}")) == repeated
    assert "single-valued one given twice" in api.get("/openapi.json").get_json()["info"]["description"]
