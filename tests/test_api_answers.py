"""The hot-path shortcuts keep every answer the same: the per-process answer memo and fast event validation."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import marshmallow as ma
import pytest
import redis
from flask import Flask

from service.api.events_schemas import EventBatch, fast_events
from service.api.recommendations_schemas import BasketRequest, RankRequest, fast_basket, fast_rank
from service.domain.events import Event
from service.infrastructure.answer_memo import AnswerMemo, fingerprint
from tests.service_helpers import ApiClient, TrainedModel, event, item_ids
from training.publish import publish_model

pytest_plugins = ["tests.service_helpers"]


class _State:
    """Stands in for a ServingState (the memo only needs identity and a weak reference)."""


def test_memo_answers_only_for_the_same_state_and_fingerprint():
    memo, state, other = AnswerMemo(2), _State(), _State()
    answer = {"items": []}
    memo.put(state, "a", answer, b"f1")  # type: ignore[arg-type]
    assert memo.get(state, "a", b"f1") is answer  # type: ignore[arg-type]
    assert memo.get(state, "a", b"f2") is None  # type: ignore[arg-type]
    assert memo.get(other, "a", b"f1") is None  # type: ignore[arg-type]
    memo.put(other, "b", answer)  # type: ignore[arg-type]
    assert len(memo) == 1 and memo.get(state, "a", b"f1") is None  # type: ignore[arg-type]


def test_memo_is_bounded_lru_and_can_be_off():
    memo, state = AnswerMemo(2), _State()
    for key in ("a", "b"):
        memo.put(state, key, {"k": key})  # type: ignore[arg-type]
    assert memo.get(state, "a") is not None  # type: ignore[arg-type]
    memo.put(state, "c", {"k": "c"})  # type: ignore[arg-type]
    assert memo.get(state, "b") is None and memo.get(state, "a") is not None  # type: ignore[arg-type]
    off = AnswerMemo(0)
    off.put(state, "a", {})  # type: ignore[arg-type]
    assert off.get(state, "a") is None and len(off) == 0  # type: ignore[arg-type]


def test_fingerprint_sees_every_value_and_ignores_field_order():
    base = fingerprint(b"record", {b"e1": b"[1]"}, {})
    assert base == fingerprint(b"record", {b"e1": b"[1]"}, {})
    assert base != fingerprint(b"record", {b"e1": b"[2]"}, {})
    assert base != fingerprint(b"record", {}, {b"e1": b"[1]"})
    assert base != fingerprint(None, {b"e1": b"[1]"}, {})
    assert fingerprint(None, {b"a": b"1", b"b": b"2"}) == fingerprint(None, {b"b": b"2", b"a": b"1"})


def test_memoised_answers_still_change_with_every_event(app: Flask, retail: TrainedModel):
    api = ApiClient(app)
    customer = retail.busiest_customer()
    url = f"/v1/customers/{customer}/recommendations?n=10&exclude_purchased=true"
    first = api.get(url).get_json()
    assert api.get(url).get_json() == first
    assert len(app.extensions["tailor"].engine.answers) >= 1
    new_item = item_ids(api.get(url))[0]
    assert api.post("/v1/events", json=[event("memo-1", customer, item_id=new_item)]).status_code == 200
    assert new_item not in item_ids(api.get(url)), "the purchase changed the very next answer"

    stranger = "memo-unknown-customer"
    assert api.get(f"/v1/customers/{stranger}/recommendations").get_json()["source"] == "popular"
    assert api.post("/v1/events", json=[event("memo-2", stranger, "view", item_id=new_item)]).status_code == 200
    assert api.get(f"/v1/customers/{stranger}/recommendations").get_json()["source"] == "session"


def test_memo_off_and_wall_clock_give_the_same_answers(make_app: Callable[..., Flask], retail: TrainedModel):
    customer = retail.busiest_customer()
    urls = [f"/v1/customers/{customer}/recommendations?n=7", f"/v1/items/{retail.popular_items()[0]}/similar"]
    memo, plain = ApiClient(make_app()), ApiClient(make_app(TAILOR_ANSWER_CACHE_SIZE="0"))
    for url in urls:
        assert memo.get(url).get_json() == memo.get(url).get_json() == plain.get(url).get_json()
    basket = {"items": retail.popular_items()[:2], "n": 5}
    assert memo.post("/v1/recommendations", json=basket).get_json() == \
        plain.post("/v1/recommendations", json=basket).get_json()
    assert len(plain.app.extensions["tailor"].engine.answers) == 0
    wall = make_app(TAILOR_CLOCK="wall")
    ApiClient(wall).get(urls[0])
    assert len(wall.extensions["tailor"].engine.answers) == 0


@pytest.mark.parametrize("payload", [
    [event("f1", "c1", "view", item_id="i1"), event("f2", "c2", quantity=2, price=1.5, item_id="i2")],
    {"events": [event("f3", "c3", "click", decision_id="d1", timestamp="2011-12-10T10:00:00+02:00")]},
])
def test_fast_event_validation_equals_the_schema(payload):
    fast = fast_events(payload)
    assert fast == ma.Schema.load(EventBatch(), payload)["events"]
    assert [hash(event) for event in fast] == [hash(Event(**vars(event))) for event in fast]
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast[0].item_id = "changed"


@pytest.mark.parametrize("payload", [
    [event("f1", "c1", "view")],  # item missing
    [event("f1", "c1", quantity="2", item_id="i")],  # a string the schema may convert
    [event("f1", " ", "click")],
    [event("f1", "c\x01", "click")],  # a control character in any id, of any event of the batch
    [event("f0", "c0", "click"), event("f1", "c1", item_id="i\x7f")],
    [event("f1", "c1", "click", decision_id="d\ud800")],
    [{**event("f1", "c1", "click"), "extra": 1}],
    [event("f1", "c1", "click", timestamp="1900-01-01T00:00:00")],
    [event("f1", "c1", quantity=True, item_id="i")],
    {"events": [event("f1", "c1", "click")], "more": 1},
    [],
])
def test_unusual_batches_go_through_the_schema(payload):
    assert fast_events(payload) is None


@pytest.mark.parametrize("payload", [
    {"items": ["i1", "i2"]},
    {"items": [], "n": 3},
    {"items": ["i1"], "n": 100, "exclude": ["i2"], "category": "Tea", "exclude_category": "Mugs"},
])
def test_fast_basket_validation_equals_the_schema(payload):
    assert fast_basket(payload) == ma.Schema.load(BasketRequest(), payload)


@pytest.mark.parametrize("payload", [
    {"n": 3},  # items missing
    {"items": ["i1"], "n": 0},
    {"items": ["i1"], "n": 10.0},
    {"items": ["i1"], "n": True},
    {"items": [" "]},
    {"items": "i1"},
    {"items": ["i1"], "category": ""},
    {"items": ["i1"], "category": None},
    {"items": ["i1"], "extra": 1},
    {"items": ["i"] * 201},
    ["i1"],
])
def test_unusual_baskets_go_through_the_schema(payload):
    assert fast_basket(payload) is None


@pytest.mark.parametrize("payload", [{"items": ["i1"]}, {"items": ["i1", "i2", "i1", "a b", "x" * 256]}])
def test_fast_rank_validation_equals_the_schema(payload):
    assert fast_rank(payload) == ma.Schema.load(RankRequest(), payload)


@pytest.mark.parametrize("payload", [
    {"items": []}, {"items": ["i"] * 501}, {"items": [" "]}, {"items": ["x" * 257]}, {"items": "i1"},
    {"items": [1]}, {"items": ["i1"], "extra": 1}, {}, ["i1"], {"items": ["a\x00b"]},
])
def test_unusual_rank_bodies_go_through_the_schema(payload):
    assert fast_rank(payload) is None


def test_baskets_are_remembered_per_set_of_known_items(make_app: Callable[..., Flask], retail: TrainedModel):
    """Order, repeats and unknown ids do not change a basket's answer, so they share one memo entry; the
    answer equals the one computed without the memo."""
    first, second = retail.popular_items()[:2]
    api = ApiClient(make_app())
    plain = ApiClient(make_app(TAILOR_ANSWER_CACHE_SIZE="0"))
    bodies = [{"items": [first, second], "n": 5}, {"items": [second, "no-such-item", first, first], "n": 5}]
    answers = [api.post("/v1/recommendations", json=body).get_json() for body in bodies]
    assert answers[0] == answers[1] == plain.post("/v1/recommendations", json=bodies[1]).get_json()
    assert len(api.app.extensions["tailor"].engine.answers) == 1


def test_rank_answers_are_those_of_full_scoring_for_every_customer(
        make_app: Callable[..., Flask], redis_client: redis.Redis, retail_hybrid: TrainedModel):
    """Once a customer's row is remembered, re-ranking scores only the posted items: every customer of the
    sample gets the answer of full scoring (the memo off), on the first call and on remembered ones, and a
    purchase changes the next answer at once."""
    publish_model(redis_client, retail_hybrid.path)
    memo, plain = ApiClient(make_app()), ApiClient(make_app(TAILOR_ANSWER_CACHE_SIZE="0"))
    artifact = retail_hybrid.artifact
    popular = retail_hybrid.popular_items()[:8]
    for row, customer in enumerate(artifact.customer_ids.tolist()):
        own = [str(artifact.item_ids[i]) for i in artifact.history.items_of(row)[:4]]
        page = {"items": [*own, *popular, "not-in-the-catalogue"]}
        url = f"/v1/customers/{customer}/rank"
        expected = plain.post(url, json=page).get_json()
        assert expected["source"] == "personalized"
        assert memo.post(url, json=page).get_json() == expected
        other = {"items": popular[::-1]}  # another page, scored from what the first one left remembered
        assert memo.post(url, json=other).get_json() == plain.post(url, json=other).get_json()
    assert len(memo.app.extensions["tailor"].engine.customer_rows) == len(artifact.customer_ids)
    assert len(plain.app.extensions["tailor"].engine.customer_rows) == 0

    customer = retail_hybrid.busiest_customer()
    url, page = f"/v1/customers/{customer}/rank", {"items": popular}
    before = memo.post(url, json=page).get_json()
    last = before["items"][-1]["item_id"]
    assert memo.post("/v1/events", json=[event("rank-1", customer, item_id=last)]).status_code == 200
    after = memo.post(url, json=page).get_json()
    assert after == plain.post(url, json=page).get_json() != before
    assert [i["score"] for i in after["items"] if i["item_id"] == last] > [before["items"][-1]["score"]]
