"""POST /v1/events: idempotency, the capped stream, live purchases, sessions, validation."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
from flask import Flask

from redis_state import keys
from tests.service_helpers import ApiClient, TrainedModel, assert_error, event, item_ids
from training.events import read_stream_purchases

pytest_plugins = ["tests.service_helpers"]


def post(api: ApiClient, *events: dict) -> dict:
    response = api.post("/v1/events", json={"events": list(events)})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_events_are_idempotent_on_event_id(api: ApiClient, retail: TrainedModel, redis_client: redis.Redis):
    item = retail.popular_items()[0]
    first = post(api, event("e-1", "c-new", "view", item), event("e-2", "c-new", "view", item),
                 event("e-1", "c-new", "view", item))
    assert first == {"received": 3, "accepted": 2, "duplicates": 1, "unattributed": 0}
    again = post(api, event("e-1", "c-new", "view", item), event("e-3", "c-new", "purchase", item))
    assert again == {"received": 2, "accepted": 1, "duplicates": 1, "unattributed": 0}
    assert redis_client.xlen(keys.EVENTS_STREAM) == 3
    assert len(redis_client.hgetall(keys.customer_live("c-new"))) == 1


def test_an_event_is_identified_by_customer_and_event_id(api: ApiClient, retail: TrainedModel,
                                                         redis_client: redis.Redis):
    item = retail.popular_items()[0]
    body = post(api, event("same", "c-a", "purchase", item), event("same", "c-b", "purchase", item))
    assert body == {"received": 2, "accepted": 2, "duplicates": 0, "unattributed": 0}
    assert {row["customer_id"] for _, row in read_stream_purchases(redis_client).iterrows()} == {"c-a", "c-b"}


def test_a_half_failed_write_does_not_turn_the_retry_into_a_duplicate(api: ApiClient, retail: TrainedModel,
                                                                      redis_client: redis.Redis):
    item = retail.popular_items()[0]
    batch = [event("hf-1", "c-hf", "purchase", item), event("hf-2", "c-hf", "view", item),
             event("hf-3", "c-other", "click", item)]
    redis_client.set(keys.EVENTS_STREAM, "not a stream")  # the customers' scripts succeed, the stream append fails
    assert_error(api.post("/v1/events", json=batch), 503, "redis_unavailable")
    redis_client.delete(keys.EVENTS_STREAM)
    assert post(api, *batch) == {"received": 3, "accepted": 3, "duplicates": 0, "unattributed": 0}
    assert redis_client.xlen(keys.EVENTS_STREAM) == 3
    assert len(redis_client.hgetall(keys.customer_live("c-hf"))) == 1, "recording the purchase twice is a no-op"
    assert post(api, *batch) == {"received": 3, "accepted": 0, "duplicates": 3, "unattributed": 0}


def test_the_retraining_job_reads_a_repeated_stream_entry_once(api: ApiClient, retail: TrainedModel,
                                                               redis_client: redis.Redis):
    item = retail.popular_items()[0]
    post(api, event("rep-1", "c-rep", "purchase", item))
    entry = redis_client.xrange(keys.EVENTS_STREAM)[0][1]
    redis_client.xadd(keys.EVENTS_STREAM, entry)  # what a retry after a failed feedback write leaves behind
    assert len(read_stream_purchases(redis_client)) == 1


def test_stream_entries_are_what_the_retraining_job_reads(api: ApiClient, retail: TrainedModel,
                                                          redis_client: redis.Redis):
    item = retail.popular_items()[1]
    post(api, event("p-1", "c-9", "purchase", item, "2011-12-10T10:00:00+01:00", quantity=3, price=2.5),
         event("v-1", "c-9", "view", item), event("i-1", "c-9", "impression", decision_id="d-1"))
    purchases = read_stream_purchases(redis_client)
    assert len(purchases) == 1
    row = purchases.iloc[0]
    assert (row["customer_id"], row["item_id"], row["quantity"], row["price"]) == ("c-9", item, 3.0, 2.5)
    assert str(row["timestamp"]) == "2011-12-10 09:00:00"  # converted to UTC
    assert row["order_id"] == "event:p-1"
    entries = redis_client.xrange(keys.EVENTS_STREAM)
    impression = {k.decode(): v.decode() for k, v in entries[2][1].items()}
    assert impression["type"] == "impression" and impression["decision_id"] == "d-1"
    assert "item_id" not in impression


def test_stream_is_capped(make_app: Callable[..., Flask], retail: TrainedModel, redis_client: redis.Redis):
    api = ApiClient(make_app(TAILOR_EVENTS_MAXLEN="50"))
    item = retail.popular_items()[0]
    for batch in range(6):
        post(api, *[event(f"cap-{batch}-{i}", "c-cap", "view", item) for i in range(200)])
    length = redis_client.xlen(keys.EVENTS_STREAM)
    # MAXLEN ~ trims whole stream nodes (100 entries by default), never below the cap.
    assert 50 <= length <= 50 + 100
    last = redis_client.xrevrange(keys.EVENTS_STREAM, count=1)[0][1]
    assert last[b"event_id"] == b"cap-5-199"


def test_purchase_is_excluded_from_discovery_at_once(api: ApiClient, retail: TrainedModel):
    customer = retail.busiest_customer()
    url = f"/v1/customers/{customer}/recommendations?n=5&exclude_purchased=true"
    before = item_ids(api.get(url))
    post(api, event("buy-1", customer, "purchase", before[0]))
    after = item_ids(api.get(url))
    assert before[0] not in after and len(after) == 5


def test_purchase_before_the_models_data_end_is_not_counted_twice(api: ApiClient, retail: TrainedModel):
    customer = retail.busiest_customer()
    profile = api.get(f"/v1/customers/{customer}/profile").get_json()
    item = sorted(retail.customer_items(customer))[0]
    post(api, event("old-1", customer, "purchase", item, "2011-01-01T10:00:00Z"))
    assert api.get(f"/v1/customers/{customer}/profile").get_json()["orders"] == profile["orders"]
    post(api, event("new-1", customer, "purchase", item, "2011-12-20T10:00:00Z", price=1.0, quantity=2))
    after = api.get(f"/v1/customers/{customer}/profile").get_json()
    assert after["orders"] == profile["orders"] + 1
    assert after["spend"] == pytest.approx(profile["spend"] + 2.0)
    assert after["live_purchases"] == 1


def test_unknown_customer_with_events_gets_session_recommendations(api: ApiClient, retail: TrainedModel):
    viewed = retail.popular_items()[0]
    assert api.get("/v1/customers/visitor-1/recommendations").get_json()["source"] == "popular"
    post(api, event("s-1", "visitor-1", "view", viewed), event("s-2", "visitor-1", "add_to_cart", viewed))
    body = api.get("/v1/customers/visitor-1/recommendations?n=5").get_json()
    assert body["source"] == "session"
    ids = [i["item_id"] for i in body["items"]]
    assert len(ids) == 5 and viewed not in ids
    # issue 14: reasons name the related item by its title (with the id in brackets), not by the id alone
    assert any(i["reason"].startswith("bought with ") and i["reason"].endswith(f" ({viewed}) you viewed")
               for i in body["items"])
    similar = item_ids(api.get(f"/v1/items/{viewed}/similar?n=5"))
    assert ids[:3] == similar[:3]


def test_unknown_customer_with_a_purchase_is_a_first_time_buyer(api: ApiClient, retail: TrainedModel):
    item = retail.popular_items()[2]
    assert api.get("/v1/customers/newcomer/profile").get_json()["journey_stage"] == "new"
    post(api, event("n-1", "newcomer", "purchase", item, "2011-12-10T10:00:00Z", quantity=2))
    profile = api.get("/v1/customers/newcomer/profile").get_json()
    assert profile["journey_stage"] == "first-time buyer"
    assert profile["orders"] == 1 and profile["top_items"][0]["item_id"] == item
    recs = api.get("/v1/customers/newcomer/recommendations?n=5&exclude_purchased=true").get_json()
    assert recs["source"] == "session"
    assert item not in [i["item_id"] for i in recs["items"]]
    assert any(i["reason"].startswith("bought with ") and i["reason"].endswith(f" ({item}) you ordered")
               for i in recs["items"])


def test_a_bare_list_of_events_is_accepted(api: ApiClient, retail: TrainedModel):
    response = api.post("/v1/events", json=[event("bare-1", "c-1", "click", decision_id="d-9")])
    assert response.get_json() == {"received": 1, "accepted": 1, "duplicates": 0, "unattributed": 1}


def test_clicks_with_an_unknown_decision_id_are_counted_as_unattributed(api: ApiClient, retail: TrainedModel):
    """Never silently accepted: the answer and tailor_unattributed_feedback_total count them."""
    from tests.test_observability import scrape, value

    before = scrape(api)
    batch = [event("u-1", "c-1", "click", decision_id="p-0123456789abcdef-nosuchpromo"),  # never made here
             event("u-2", "c-1", "conversion", decision_id="m-0123456789abcdef-nosuchslot"),
             event("u-3", "c-1", "click", decision_id="garbage"),  # not a decision id of ours at all
             event("u-4", "c-1", "view", retail.popular_items()[0], decision_id="garbage")]  # not feedback
    assert post(api, *batch) == {"received": 4, "accepted": 4, "duplicates": 0, "unattributed": 3}
    assert post(api, *batch)["unattributed"] == 0, "a repeated event is a duplicate, not counted again"
    after = scrape(api)
    name = "tailor_unattributed_feedback_total"
    assert value(after, name, type="click", reason="unknown") - value(before, name, type="click", reason="unknown") == 2
    assert value(after, name, type="conversion", reason="unknown") - value(
        before, name, type="conversion", reason="unknown") == 1


def test_batch_limit(make_app: Callable[..., Flask], retail: TrainedModel):
    api = ApiClient(make_app(TAILOR_EVENTS_MAX_BATCH="10"))
    ok = api.post("/v1/events", json={"events": [event(f"b-{i}", "c", "click") for i in range(10)]})
    assert ok.status_code == 200
    error = assert_error(api.post("/v1/events", json={"events": [event(f"b-{i}", "c", "click")
                                                                  for i in range(11)]}), 400, "invalid_input")
    assert "events" in error["details"]["json"]


@pytest.mark.parametrize("bad, field", [
    ({"type": "teleport"}, "type"),
    ({"type": "purchase", "item_id": None}, "item_id"),
    ({"timestamp": "yesterday"}, "timestamp"),
    ({"timestamp": "9999-12-31T23:59:59-14:00"}, "timestamp"),
    ({"timestamp": "1970-01-01T00:00:00Z"}, "timestamp"),
    ({"quantity": -1}, "quantity"),
    ({"quantity": 0}, "quantity"),
    ({"price": -0.5}, "price"),
    ({"event_id": ""}, "event_id"),
    ({"event_id": "x" * 257}, "event_id"),
    ({"customer_id": "bad\x00id"}, "customer_id"),
    ({"customer_id": 42}, "customer_id"),
    ({"surprise": 1}, "surprise"),
])
def test_event_validation_names_the_field(api: ApiClient, retail: TrainedModel, redis_client: redis.Redis,
                                          bad: dict, field: str):
    good = event("v-ok", "c-1", "view", retail.popular_items()[0])
    error = assert_error(api.post("/v1/events", json={"events": [good, {**good, "event_id": "v-2", **bad}]}),
                         400, "invalid_input")
    assert field in error["details"]["json"]["events"]["1"]
    assert redis_client.xlen(keys.EVENTS_STREAM) == 0, "a rejected batch stores nothing"


def test_empty_batch_is_rejected(api: ApiClient, retail: TrainedModel):
    assert_error(api.post("/v1/events", json={"events": []}), 400, "invalid_input")
    assert_error(api.post("/v1/events", json={}), 400, "invalid_input")


def test_a_session_past_twice_its_size_keeps_its_newest_items(make_app: Callable[..., Flask], retail: TrainedModel,
                                                              redis_client: redis.Redis):
    """The events script cuts a session of more than 2 x TAILOR_SESSION_MAX_ITEMS items to the newest ones
    (an unreadable value counts as the oldest), in the same call that records the views."""
    api = ApiClient(make_app(TAILOR_SESSION_MAX_ITEMS="4"))
    items = [str(i) for i in retail.artifact.item_ids[:9]]
    key = keys.customer_session("c-long")
    for minute, item in enumerate(items[:8]):
        post(api, event(f"s-{minute}", "c-long", "view", item, timestamp=f"2011-12-10T10:{minute:02d}:00Z"))
    redis_client.hset(key, "garbage", b"not json")
    assert redis_client.hlen(key) == 9, "up to twice the size nothing is cut"
    post(api, event("s-late", "c-long", "view", items[8], timestamp="2011-12-10T11:00:00Z"))
    assert {name.decode() for name in redis_client.hkeys(key)} == {items[8], *items[5:8]}
    newest = api.get("/v1/customers/c-long/recommendations?n=5").get_json()
    assert newest["source"] == "session"


def test_a_large_batch_lands_whole_once_and_in_batch_order(make_app: Callable[..., Flask], retail: TrainedModel,
                                                         redis_client: redis.Redis):
    """2,500 events (the single-Redis script reads their markers 1,000 at a time) over a few customers: every
    event in the stream once, in the order sent; sent again, all duplicates and the stream unchanged."""
    api = ApiClient(make_app(TAILOR_EVENTS_MAX_BATCH="2500"))
    items = retail.popular_items()[:7]
    batch = [event(f"big-{i}", f"c-big-{i % 13}", ("purchase", "view", "impression")[i % 3], items[i % 7])
             for i in range(2500)]
    batch[10] = event("big-10", "c-big-10", "impression")  # no item: nothing recorded for it
    assert post(api, *batch) == {"received": 2500, "accepted": 2500, "duplicates": 0, "unattributed": 0}
    entries = redis_client.xrange(keys.EVENTS_STREAM)
    assert [(f[b"customer_id"].decode(), f[b"event_id"].decode()) for _, f in entries] == \
        [(e["customer_id"], e["event_id"]) for e in batch]
    purchases = sum(1 for e in batch if e["type"] == "purchase")
    assert sum(len(redis_client.hgetall(keys.customer_live(f"c-big-{c}"))) for c in range(13)) == purchases
    assert post(api, *batch) == {"received": 2500, "accepted": 0, "duplicates": 2500, "unattributed": 0}
    assert redis_client.xlen(keys.EVENTS_STREAM) == 2500
