"""The message bandit against a real Redis: context, posterior, propensities, atomic and idempotent
updates, stickiness, the non-contextual fallback and a seeded simulation that must find the better variant."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import redis

from redis_state import keys
from service.domain.bandit import (
    CONTEXT_DIM,
    LinearPosterior,
    choose,
    context_vector,
    unpack_upper,
    unpack_vector,
)
from service.domain.messages import Sticky, render
from service.domain.targeting import CustomerFacts, DefinitionError, parse_decision_id
from service.infrastructure.bandit_store import Bandit
from service.infrastructure.feedback import apply_feedback
from service.infrastructure.message_board import MessageBoard

T0 = 1_800_000_000.0


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def known(cid: str, embedding: np.ndarray, stage: str = "repeat", country: str | None = "Germany",
          orders: int = 4) -> CustomerFacts:
    return CustomerFacts(cid, True, stage, country, orders, 100.0, embedding)


def anonymous(cid: str) -> CustomerFacts:
    return CustomerFacts(cid, False, "new")


def slot_body(n: int = 2, **kw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"variants": [{"id": f"v{i}", "content": f"Variant {i}", "tone": "value"}
                                        for i in range(n)]}
    doc.update(kw)
    return doc


def no_values(_names: set[str]) -> dict[str, Any]:
    return {}


def stored_context(who: CustomerFacts) -> np.ndarray:
    """The context as the decision stores it (float32) and the Lua scripts add it up (float64)."""
    return np.asarray(context_vector(who), dtype=np.float32).astype(np.float64)


@pytest.fixture
def clock() -> list[float]:
    return [T0]


@pytest.fixture
def board(clock: list[float]) -> MessageBoard:
    return MessageBoard(Bandit(rng=np.random.default_rng(7), poll_s=0.0), poll_s=0.0, clock=lambda: clock[0])


# -- context and math ----------------------------------------------------------------------------------
def test_context_vector_layout() -> None:
    e = unit(np.arange(1.0, 17.0))
    x = context_vector(known("c", e, stage="lapsed", country="France", orders=100))
    assert x is not None and x.shape == (CONTEXT_DIM,) == (30,)
    assert x[0] == 1.0
    assert x[1:5].tolist() == [0, 0, 0, 1]  # stages: new, first-time buyer, repeat, lapsed
    assert x[5:13].sum() == 1.0  # one country bucket
    assert x[13] == pytest.approx(1.0)
    assert np.allclose(x[14:], e)
    same = context_vector(known("d", e, stage="lapsed", country="FRANCE", orders=100))
    assert np.array_equal(x, same)
    assert context_vector(anonymous("a")) is None
    assert context_vector(known("z", np.zeros(16))) is None


def test_posterior_matches_closed_form() -> None:
    rng = np.random.default_rng(1)
    d = 4
    X = rng.standard_normal((50, d))
    r = (rng.random(50) < 0.3).astype(float)
    a = (X.T @ X)[None]
    b = (X.T @ r)[None]
    post = LinearPosterior.from_stats(a, b, np.asarray([0.25]), lam=2.0, sigma=0.5)
    precision = 2.0 * np.eye(d) + X.T @ X
    prior = np.asarray([0.25, 0, 0, 0])
    assert np.allclose(post.mean[0], np.linalg.solve(precision, X.T @ r + 2.0 * prior))
    x = rng.standard_normal(d)
    mu, sd = post.moments(x)
    assert mu[0] == pytest.approx(post.mean[0] @ x)
    assert sd[0] == pytest.approx(0.5 * np.sqrt(x @ np.linalg.solve(precision, x)))


def test_choose_propensities_are_exact() -> None:
    rng = np.random.default_rng(3)
    q = np.asarray([0.7, 0.3, 0.0])
    counts = np.zeros(3)
    explored = 0
    n = 40_000
    for _ in range(n):
        v, p, e = choose(q, 0.3, rng)
        counts[v] += 1
        explored += e
        assert p == pytest.approx(0.1 + 0.7 * q[v])
    assert np.allclose(counts / n, 0.1 + 0.7 * q, atol=0.01)
    assert explored / n == pytest.approx(0.3, abs=0.01)


def test_packing_round_trip() -> None:
    m = np.arange(9.0).reshape(3, 3)
    m = m + m.T
    blob = m[np.triu_indices(3)].astype("<f8").tobytes()
    assert np.array_equal(unpack_upper(blob, 3), m)
    assert np.array_equal(unpack_upper(b"short", 3), np.zeros((3, 3)))
    assert np.array_equal(unpack_vector(None, 3), np.zeros(3))


# -- slots ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("body", "field"), [
    ({"variants": [{"id": "a", "content": "x"}]}, "variants"),
    (slot_body(21), "variants"),
    ({"variants": [{"id": "a", "content": "x"}, {"id": "a", "content": "y"}]}, "variants.1.id"),
    ({"variants": [{"id": "a", "content": "x"}, {"id": "b c", "content": "y"}]}, "variants.1.id"),
    ({"variants": [{"id": "a", "content": ""}, {"id": "b", "content": "y"}]}, "variants.0.content"),
    ({"variants": [{"id": "a", "content": "Hi {name}"}, {"id": "b", "content": "y"}]}, "variants.0.content"),
    ({"variants": [{"id": "a", "content": "Hi {"}, {"id": "b", "content": "y"}]}, "variants.0.content"),
    ({"variants": [{"id": "a", "content": "{x.__class__}"}, {"id": "b", "content": "y"}]}, "variants.0.content"),
    ({"variants": [{"id": "a", "content": "x", "tone": "LOUD!"}, {"id": "b", "content": "y"}]},
     "variants.0.tone"),
    (slot_body(exploration=1.5), "exploration"),
    (slot_body(exploration=-0.1), "exploration"),
    (slot_body(sticky_days=-1), "sticky_days"),
])
def test_invalid_slots_name_the_field(redis_client: redis.Redis, board: MessageBoard, body: dict[str, Any],
                                      field: str) -> None:
    with pytest.raises(DefinitionError) as info:
        board.put(redis_client, "banner", body)
    assert field in info.value.fields
    assert board.list(redis_client) == []


def test_slot_crud_and_report_kept_until_purge(redis_client: redis.Redis, board: MessageBoard) -> None:
    slot, created = board.put(redis_client, "banner", slot_body(3))
    assert created and slot.exploration == 0.1 and slot.sticky_days == 7
    _, created = board.put(redis_client, "banner", slot_body(2, exploration=0.2))
    assert not created and board.get(redis_client, "banner")[0].exploration == 0.2
    live = board.live_slot(redis_client, "banner")
    board.decide(redis_client, live, anonymous("a1"), space=None, sticky_raw=None, values=no_values)
    board.delete(redis_client, "banner")
    with pytest.raises(Exception, match="does not exist"):
        board.live_slot(redis_client, "banner")
    report = board.report(redis_client, "banner")
    assert report["status"] == "deleted" and report["totals"]["decisions"] == 1
    board.delete(redis_client, "banner", purge=True)
    assert list(redis_client.scan_iter(match=keys.message_pattern("banner"))) == []
    with pytest.raises(Exception, match="does not exist"):
        board.report(redis_client, "banner")


def test_render_is_safe_and_handles_missing_values() -> None:
    values = {"first_name": None, "top_category": "kitchen", "recommended_item": "{first_name.__class__} mug"}
    assert render("Hi {first_name|there}, more {top_category}!", values) == "Hi there, more kitchen!"
    assert render("Hi {first_name}, try {recommended_item}.", values) == "Hi, try {first_name.__class__} mug."
    assert render("{{literal}} {top_category}", values) == "{literal} kitchen"
    assert render("Only {country}.", {}) == "Only."


# -- decisions, rewards, idempotency -------------------------------------------------------------------
def test_decision_updates_model_atomically(redis_client: redis.Redis, board: MessageBoard) -> None:
    board.put(redis_client, "banner", slot_body(2, sticky_days=0))
    slot = board.live_slot(redis_client, "banner")
    rng = np.random.default_rng(0)
    expected: dict[str, np.ndarray] = {}
    for i in range(20):
        who = known(f"c{i}", unit(rng.standard_normal(16)))
        answer = board.decide(redis_client, slot, who, space="m1", sticky_raw=None, values=no_values)
        x = stored_context(who)
        v = answer["variant"]["id"]
        expected[v] = expected.get(v, np.zeros((CONTEXT_DIM, CONTEXT_DIM))) + np.outer(x, x)
        record = redis_client.hgetall(keys.message_decision("banner", answer["decision_id"]))
        assert record[b"v"].decode() == v and float(record[b"p"]) == pytest.approx(answer["propensity"], abs=1e-6)
    for v, a in expected.items():
        assert np.allclose(unpack_upper(redis_client.hget(keys.message_model("banner"), f"A:m1:{v}")), a,
                           rtol=1e-12, atol=1e-12)
    assert int(redis_client.hget(keys.message_stats("banner"), "decisions")) == 20


def test_rewards_are_idempotent(redis_client: redis.Redis, board: MessageBoard) -> None:
    board.put(redis_client, "banner", slot_body(2, sticky_days=0))
    slot = board.live_slot(redis_client, "banner")
    who = known("c1", unit(np.ones(16)))
    answer = board.decide(redis_client, slot, who, space="m1", sticky_raw=None, values=no_values)
    did, v = answer["decision_id"], answer["variant"]["id"]
    event = SimpleNamespace(type="click", decision_id=did, customer_id="c1")
    assert apply_feedback(redis_client, [event, event]) == ["rewarded", "duplicate"]
    conversion = SimpleNamespace(type="conversion", decision_id=did, customer_id="c1")
    assert apply_feedback(redis_client, [conversion, conversion]) == ["counted", "duplicate"]
    assert board.feedback(redis_client, "banner", did, "click", "intruder") == "mismatch"
    assert board.feedback(redis_client, "banner", "m-0123456789abcdef-banner", "click", "c1") == "unknown"
    b = unpack_vector(redis_client.hget(keys.message_model("banner"), f"b:m1:{v}"))
    assert np.array_equal(b, stored_context(who))  # one reward of 1: b = x exactly once
    stats = {k.decode(): float(x) for k, x in redis_client.hgetall(keys.message_stats("banner")).items()}
    assert stats[f"clicks:{v}"] == stats[f"conversions:{v}"] == stats[f"rewards:{v}"] == stats["rewards"] == 1
    w = float(redis_client.hget(keys.message_decision("banner", did), "wl"))
    assert stats["ips_learned"] == pytest.approx(w) and stats["ips_learned_sq"] == pytest.approx(w * w)


def test_feedback_ignores_foreign_and_malformed_ids(redis_client: redis.Redis) -> None:
    events = [SimpleNamespace(type="click", decision_id=d, customer_id="c") for d in
              ("", None, "nonsense", "x-0123456789abcdef-banner", "m-0123456789abcdef-{bad}")]
    events.append(SimpleNamespace(type="view", decision_id="m-0123456789abcdef-banner", customer_id="c"))
    # applied to nothing; the three clicks whose decision id is not ours are reported as unattributed
    assert apply_feedback(redis_client, events) == ["unknown"] * 3
    assert redis_client.keys("*") == []
    assert parse_decision_id("m-0123456789abcdef-home-banner") == ("message", "home-banner")
    assert parse_decision_id("p-0123456789abcdef-spring.sale") == ("promotion", "spring.sale")


def test_concurrent_decisions_and_rewards_lose_nothing(redis_client: redis.Redis, redis_url: str) -> None:
    """200 concurrent requests, each followed by the same click delivered twice from two threads."""
    board = MessageBoard(Bandit(rng=np.random.default_rng(11), poll_s=0.0), poll_s=0.0)
    board.put(redis_client, "banner", slot_body(3, sticky_days=0))
    pool = redis.ConnectionPool.from_url(redis_url, max_connections=64)
    lock = threading.Lock()
    made: list[tuple[str, str, np.ndarray]] = []

    def request(i: int) -> None:
        client = redis.Redis(connection_pool=pool)
        who = known(f"c{i}", unit(np.random.default_rng(i).standard_normal(16)))
        slot = board.live_slot(client, "banner")
        answer = board.decide(client, slot, who, space="m1", sticky_raw=None, values=no_values)
        with lock:
            made.append((answer["decision_id"], answer["variant"]["id"], stored_context(who)))
        if i % 2 == 0:
            event = SimpleNamespace(type="click", decision_id=answer["decision_id"], customer_id=who.customer_id)
            with ThreadPoolExecutor(2) as twice:
                list(twice.map(lambda _: apply_feedback(client, [event]), range(2)))

    with ThreadPoolExecutor(50) as pool_:
        list(pool_.map(request, range(200)))
    assert len(made) == 200
    model = redis_client.hgetall(keys.message_model("banner"))
    for vid in ("v0", "v1", "v2"):
        xs = [x for _, v, x in made if v == vid]
        if not xs:
            continue
        expected = sum(np.outer(x, x) for x in xs)
        assert np.allclose(unpack_upper(model[f"A:m1:{vid}".encode()]), expected, rtol=1e-12, atol=1e-12)
    stats = {k.decode(): float(x) for k, x in redis_client.hgetall(keys.message_stats("banner")).items()}
    assert stats["decisions"] == 200 and stats["rewards"] == 100 and len({d for d, _, _ in made}) == 200
    assert sum(stats.get(f"clicks:v{i}", 0) for i in range(3)) == 100


# -- stickiness ----------------------------------------------------------------------------------------
def _sticky(redis_client: redis.Redis, cid: str) -> bytes | None:
    return redis_client.get(keys.message_sticky(cid, "banner"))


def test_stickiness(redis_client: redis.Redis, board: MessageBoard, clock: list[float]) -> None:
    board.put(redis_client, "banner", slot_body(5, sticky_days=2, exploration=1.0))
    slot = board.live_slot(redis_client, "banner")
    who = anonymous("c1")
    first = board.decide(redis_client, slot, who, space=None, sticky_raw=_sticky(redis_client, "c1"),
                         values=no_values)
    assert not first["sticky"] and 0 < redis_client.ttl(keys.message_sticky("c1", "banner")) <= 2 * 86_400
    for hours in (1, 20, 47):
        clock[0] = T0 + hours * 3600
        again = board.decide(redis_client, slot, who, space=None, sticky_raw=_sticky(redis_client, "c1"),
                             values=no_values)
        assert again["sticky"] and again["variant"] == first["variant"]
        assert (again["decision_id"], again["propensity"]) == (first["decision_id"], first["propensity"])
    v = first["variant"]["id"]
    stats = redis_client.hgetall(keys.message_stats("banner"))
    assert stats[f"impressions:{v}".encode()] == b"4" and stats[f"decisions:{v}".encode()] == b"1"
    # past sticky_days (the stored record may outlive a shortened setting): a fresh decision
    clock[0] = T0 + 49 * 3600
    later = board.decide(redis_client, slot, who, space=None, sticky_raw=_sticky(redis_client, "c1"),
                         values=no_values)
    assert not later["sticky"] and later["decision_id"] != first["decision_id"]


def test_sticky_variant_removed_or_stickiness_off(redis_client: redis.Redis, board: MessageBoard) -> None:
    board.put(redis_client, "banner", slot_body(3))
    slot = board.live_slot(redis_client, "banner")
    record = Sticky("v9", "m-0123456789abcdef-banner", 0.5, False, T0).encode()
    answer = board.decide(redis_client, slot, anonymous("c"), space=None, sticky_raw=record.encode(),
                          values=no_values)
    assert not answer["sticky"]
    board.put(redis_client, "banner", slot_body(3, sticky_days=0))
    slot = board.live_slot(redis_client, "banner")
    ids = {board.decide(redis_client, slot, anonymous("c2"), space=None, sticky_raw=None,
                        values=no_values)["decision_id"] for _ in range(5)}
    assert len(ids) == 5 and _sticky(redis_client, "c2") is None


# -- learning ------------------------------------------------------------------------------------------
def test_noncontextual_fallback_moves_traffic_to_better_variant(redis_client: redis.Redis,
                                                                board: MessageBoard) -> None:
    board.put(redis_client, "banner", slot_body(3, sticky_days=0, exploration=0.1))
    slot = board.live_slot(redis_client, "banner")
    truth = {"v0": 0.05, "v1": 0.25, "v2": 0.10}
    rng = np.random.default_rng(5)
    chosen = []
    for i in range(1500):
        answer = board.decide(redis_client, slot, anonymous(f"a{i}"), space="m1", sticky_raw=None,
                              values=no_values)
        assert answer["contextual"] is False
        v = answer["variant"]["id"]
        chosen.append(v)
        if rng.random() < truth[v]:
            board.feedback(redis_client, "banner", answer["decision_id"], "click", f"a{i}")
    late = chosen[-500:]
    assert late.count("v1") / len(late) > 0.7


def test_contextual_simulation_learns_segment_preferences(redis_client: redis.Redis) -> None:
    """Two segments (embedding directions) prefer opposite variants; the bandit must serve each its own."""
    board = MessageBoard(Bandit(rng=np.random.default_rng(21), poll_s=0.0), poll_s=0.0)
    board.put(redis_client, "banner", slot_body(2, sticky_days=0, exploration=0.1))
    slot = board.live_slot(redis_client, "banner")
    rng = np.random.default_rng(8)
    centres = [unit(rng.standard_normal(16)) for _ in range(2)]
    click = {(0, "v0"): 0.30, (0, "v1"): 0.05, (1, "v0"): 0.05, (1, "v1"): 0.30}
    right = {0: [], 1: []}
    for i in range(2000):
        seg = int(rng.integers(2))
        who = known(f"c{i}", unit(centres[seg] + 0.3 * rng.standard_normal(16)))
        answer = board.decide(redis_client, slot, who, space="m1", sticky_raw=None, values=no_values)
        assert answer["contextual"] is True
        v = answer["variant"]["id"]
        right[seg].append(v == f"v{seg}")
        if rng.random() < click[(seg, v)]:
            board.feedback(redis_client, "banner", answer["decision_id"], "click", who.customer_id)
    for seg in (0, 1):
        assert np.mean(right[seg][-300:]) > 0.8
    report = board.report(redis_client, "banner")
    ips = report["off_policy"]
    assert ips["learned"]["value"] > ips["uniform"]["value"]
    assert ips["lift"] > 1.5
