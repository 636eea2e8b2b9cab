"""GET /v1/trending: items rising in real events posted through the API, against the model's usual rate."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
from flask import Flask

from tests.service_helpers import ApiClient, TrainedModel, assert_error, event

pytest_plugins = ["tests.service_helpers"]

NOW = datetime.now(UTC).isoformat()


def post(api: ApiClient, events: list[dict]) -> None:
    response = api.post("/v1/events", json={"events": events})
    assert response.status_code == 200, response.get_data(as_text=True)


def unpopular_items(retail: TrainedModel, k: int) -> list[str]:
    """Items outside the popular list: their usual rate is the smallest there is."""
    popular = set(retail.popular_items())
    return [str(i) for i in retail.artifact.item_ids if str(i) not in popular][:k]


def fresh_api(make_app: Callable[..., Flask]) -> ApiClient:
    api = ApiClient(make_app())
    api.app.extensions["tailor"].trending.events.refresh_s = 0.0  # no lag in tests: read the stream each time
    return api


def test_few_events_fall_back_to_recent_popularity(make_app: Callable[..., Flask], retail: TrainedModel):
    api = fresh_api(make_app)
    body = api.get("/v1/trending?n=5").get_json()
    assert body["source"] == "popular" and body["segment"] == "global" and body["events"] == 0
    assert [i["item_id"] for i in body["items"]] == retail.popular_items()[:5]
    assert body["window_hours"] == 24 and body["lag_s"] == 5 and body["as_of"].endswith("Z")
    assert all("few live events" in i["reason"] for i in body["items"])


def usual_traffic(retail: TrainedModel, volume: int) -> list[dict]:
    """Views spread over the catalogue as the model's popularity says (nothing unusual in them)."""
    from service.domain.trending import usual_share

    popular = retail.artifact.popular["global"]
    share = usual_share(len(retail.artifact.item_ids), np.asarray(popular["items"]),
                        np.asarray(popular["recent_buyers"]))
    out = []
    for index in np.flatnonzero(np.round(volume * share) >= 1):
        item = str(retail.artifact.item_ids[index])
        out += [event(f"bg-{item}-{k}", f"bg-{k}", "view", item, NOW)
                for k in range(int(np.round(volume * share[index])))]
    return out


def test_items_rising_in_live_events_lead(make_app: Callable[..., Flask], retail: TrainedModel):
    api = fresh_api(make_app)
    hot, warm = unpopular_items(retail, 2)
    steady = retail.popular_items()[0]
    background = usual_traffic(retail, 3000)
    assert sum(e["item_id"] == steady for e in background) >= 10, "the best seller is busy as usual"
    events = []
    for i in range(6):  # the hot item: purchases and carts by six customers
        events += [event(f"h-p-{i}", f"c-{i}", "purchase", hot, NOW),
                   event(f"h-c-{i}", f"c-{i}", "add_to_cart", hot, NOW)]
    events += [event(f"w-v-{i}", f"c-{i}", "view", warm, NOW) for i in range(4)]
    for start in range(0, len(background), 1000):
        post(api, background[start:start + 1000])
    post(api, events)
    body = api.get("/v1/trending?n=5").get_json()
    assert body["source"] == "trending", body
    ranked = [i["item_id"] for i in body["items"]]
    assert ranked[:2] == [hot, warm]
    assert steady not in ranked, "busy as usual is not rising"
    first = body["items"][0]
    assert first["reason"].startswith("rising: 12 events in the last 24 h") and "usual rate" in first["reason"]
    assert body["events"] == len(background) + 6 * 2 + 4
    assert first["score"] > body["items"][1]["score"] > 0

    # more events later: this process reads on from where it stopped (incrementally)
    post(api, [event(f"w2-p-{i}", f"d-{i}", "purchase", warm, NOW) for i in range(10)])
    again = api.get("/v1/trending?n=5").get_json()
    assert again["items"][0]["item_id"] == warm and again["events"] == body["events"] + 10

    # a deactivated item is never returned
    admin = ApiClient(api.app, key="admin-key-0123456789")
    assert admin.patch(f"/v1/items/{warm}", json={"active": False}).status_code == 200
    assert warm not in [i["item_id"] for i in api.get("/v1/trending?n=5").get_json()["items"]]


def test_the_answer_lags_by_at_most_the_refresh_period(make_app: Callable[..., Flask], retail: TrainedModel):
    api = ApiClient(make_app())
    trending = api.app.extensions["tailor"].trending
    trending.events.refresh_s = 3600.0  # a long lag, to see it
    assert api.get("/v1/trending").get_json()["source"] == "popular"
    (hot,) = unpopular_items(retail, 1)
    post(api, [event(f"lag-{i}", f"c-{i}", "purchase", hot, NOW) for i in range(8)])
    assert api.get("/v1/trending").get_json()["source"] == "popular", "not re-read within the refresh period"
    trending.events.refresh_s = 0.0
    assert api.get("/v1/trending").get_json()["items"][0]["item_id"] == hot


def test_segment_counts_only_its_customers(make_app: Callable[..., Flask], retail: TrainedModel):
    api = fresh_api(make_app)
    artifact = retail.artifact
    countries = [artifact.customers.countries[c] if c >= 0 else None for c in artifact.customers.country]
    uk = [str(c) for c, name in zip(artifact.customer_ids, countries, strict=True) if name == "United Kingdom"]
    others = [str(c) for c, name in zip(artifact.customer_ids, countries, strict=True) if name != "United Kingdom"]
    uk_hot, other_hot = unpopular_items(retail, 2)
    post(api, [event(f"uk-{i}", uk[i], "purchase", uk_hot, NOW) for i in range(6)]
         + [event(f"ot-{i}", others[i % len(others)], "purchase", other_hot, NOW) for i in range(9)])
    world = api.get("/v1/trending?n=3").get_json()
    assert [i["item_id"] for i in world["items"]][:2] == [other_hot, uk_hot]
    local = api.get("/v1/trending?n=3&segment=country:united%20kingdom").get_json()
    assert local["segment"] == "country:United Kingdom" and local["source"] == "trending"
    assert [i["item_id"] for i in local["items"]] == [uk_hot] and local["events"] == 6


def test_trending_arguments_are_checked(make_app: Callable[..., Flask], retail: TrainedModel):
    api = fresh_api(make_app)
    assert_error(api.get("/v1/trending?window_hours=0"), 400, "invalid_input")
    assert_error(api.get("/v1/trending?window_hours=1000"), 400, "invalid_input")
    assert_error(api.get("/v1/trending?n=0"), 400, "invalid_input")
    assert_error(api.get("/v1/trending?windowhours=3"), 400, "invalid_input")
    assert api.get("/v1/trending?window_hours=2&n=3").get_json()["window_hours"] == 2
    assert_error(api.get("/v1/trending", key=None), 401)
    assert np.isfinite(len(api.get("/openapi.json", key=None).get_json()["paths"]["/v1/trending"]))
