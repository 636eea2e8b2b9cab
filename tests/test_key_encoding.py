"""Ids are data, never key syntax (issue 12.3): distinct ids never share a key, braces never move a key's
hash tag, and key patterns match only the id they were made for."""

from __future__ import annotations

import re

import redis

from redis_state import keys
from tests.service_helpers import ApiClient, event

pytest_plugins = ["tests.service_helpers"]

ODD_IDS = ["50%off", "%7B", "a%7Bb", "a{b",
           "victim", "victim}:x", "x}:ezz", "{c:victim}", "a{b}c", "}", "{", "%7D", "%", "a%25b", "a*", "a?",
           "[ab]", "a\\b", "user:7", "12345", "A-1.b_c"]


def hash_tag(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes (the first non-empty {...}, else the whole key)."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1:end]
    return key


def customer_keys(customer: str) -> list[str]:
    return [keys.customer_live(customer), keys.customer_session(customer), keys.customer_history("v1", customer),
            keys.event_seen(customer, "e1"), keys.message_sticky(customer, "slot")]


def test_ordinary_ids_are_unchanged() -> None:
    assert keys.customer_live("12345") == "tailor:live:{c:12345}"
    assert keys.event_seen("A-1.b_c", "e-1") == "tailor:event:{c:A-1.b_c}:e-1"
    assert keys.customer_history("20240101T000000Z-abc-0001", "user:7") == \
        "tailor:hist:20240101T000000Z-abc-0001:{c:user:7}"
    assert keys.promotion_cap("spring-10", "42") == "tailor:promo:{p:spring-10}:cap:42"
    assert keys.customer_live("50%off") == "tailor:live:{c:50%off}"


def test_distinct_ids_never_share_a_key() -> None:
    assert keys.event_seen("victim}:x", "ezz") != keys.event_seen("victim", "x}:ezz")
    seen: dict[str, tuple[str, ...]] = {}
    for a in ODD_IDS:
        for b in ODD_IDS:
            for name, key in (("event", keys.event_seen(a, b)), ("sticky", keys.message_sticky(a, b)),
                              ("cap", keys.promotion_cap(a, b)), ("pdecision", keys.promotion_decision(a, b)),
                              ("mdecision", keys.message_decision(a, b)), ("hist", keys.customer_history(a, b))):
                assert seen.setdefault(key, (name, a, b)) == (name, a, b), key


def test_braces_in_an_id_never_change_the_slot() -> None:
    tags = {}
    for customer in ODD_IDS:
        customer_tags = {hash_tag(key) for key in customer_keys(customer)}
        assert len(customer_tags) == 1, (customer, customer_tags)
        tags[customer] = customer_tags.pop()
    assert len(set(tags.values())) == len(ODD_IDS), "each customer has a tag of their own"
    for promotion in ODD_IDS:
        assert len({hash_tag(k) for k in (keys.promotion_stats(promotion), keys.promotion_cap(promotion, "}{"),
                                          keys.promotion_decision(promotion, "{x}"))}) == 1
    for slot in ODD_IDS:
        assert len({hash_tag(k) for k in (keys.message_stats(slot), keys.message_model(slot),
                                          keys.message_decision(slot, "}d{"))}) == 1


def test_tracked_keys_give_back_the_customer() -> None:
    for customer in ODD_IDS:
        assert keys.customer_of_tracked_key(keys.customer_live(customer)) == customer
        assert keys.customer_of_tracked_key(keys.customer_session(customer)) == customer


def test_history_keys_give_back_the_customer_of_their_version_only() -> None:
    """What a SCAN of a version's records (audiences, read-ahead) turns back into customer ids."""
    for version in ODD_IDS:
        for customer in ODD_IDS:
            assert keys.customer_of_history_key(version, keys.customer_history(version, customer)) == customer
            assert keys.customer_of_history_key(version + "x", keys.customer_history(version, customer)) is None


def test_patterns_match_only_their_own_id(redis_client: redis.Redis) -> None:
    for ident in ODD_IDS:
        redis_client.set(keys.promotion_stats(ident), 1)
        redis_client.set(keys.promotion_cap(ident, "c"), 1)
        redis_client.set(keys.message_stats(ident), 1)
        redis_client.set(keys.model_blob(ident, "items.json"), 1)
        redis_client.set(keys.customer_history(ident, "c1"), 1)
        redis_client.set(keys.customer_history(ident + ":x", "c1"), 1)
    for ident in ODD_IDS:
        for pattern, expected in ((keys.promotion_pattern(ident), {keys.promotion_stats(ident),
                                                                   keys.promotion_cap(ident, "c")}),
                                  (keys.message_pattern(ident), {keys.message_stats(ident)}),
                                  (keys.model_blob_pattern(ident), {keys.model_blob(ident, "items.json")}),
                                  (keys.customer_history_pattern(ident), {keys.customer_history(ident, "c1")})):
            found = {k.decode() for k in redis_client.scan_iter(match=pattern, count=1000)}
            assert found == expected, (ident, pattern)


def test_colliding_events_are_both_accepted(api: ApiClient, redis_client: redis.Redis) -> None:
    first = api.post("/v1/events", json=[event("ezz", "victim}:x", "click", item_id="i1")])
    second = api.post("/v1/events", json=[event("x}:ezz", "victim", "click", item_id="i1")])
    assert first.get_json()["accepted"] == 1
    assert second.get_json()["accepted"] == 1, "a different (customer, event) pair is not a duplicate"
    for key in redis_client.scan_iter(match="tailor:*", count=1000):
        name = key.decode()
        if name.startswith(("tailor:event:", "tailor:live:", "tailor:session:")):
            assert re.fullmatch(r"[^{}]*\{c:[^{}]*\}[^{}]*", name), name
