"""Promotions domain against a real Redis: definitions, validation, eligibility, ranking, caps, budgets."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import redis

from redis_state import keys
from service.domain.profile import STAGES
from service.domain.promotion_ranking import TargetIndex, rank
from service.domain.targeting import CustomerFacts, DefinitionError
from service.infrastructure.definitions import DefinitionStore
from service.infrastructure.model_store import assemble
from service.infrastructure.promotion_book import PromotionBook

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def catalogue(version: str = "v1"):
    """A real served-model snapshot (``model_store.LoadedModel``) of six items in two categories."""
    items = [
        {"item_id": "A", "title": "Red mug", "category": "kitchen"},
        {"item_id": "B", "title": "Blue mug", "category": "kitchen"},
        {"item_id": "C", "title": "Candle", "category": "home"},
        {"item_id": "D", "title": "Lamp", "category": "home"},
        {"item_id": "E", "title": "Teapot", "category": "kitchen"},
        {"item_id": "F", "title": "Vase", "category": "home"},
    ]
    popular = {"global": {"items": [2, 0, 5], "recent_buyers": [30, 20, 10]}}
    return assemble(version, {"version": version}, None, np.asarray([i["item_id"] for i in items]), items,
                    popular, ["United Kingdom", "Germany"])


def body(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "Mug week", "items": ["A"], "categories": [], "offer": {"text": "10% off mugs", "percent_off": 10},
        "starts_at": (NOW - timedelta(days=1)).isoformat(), "ends_at": (NOW + timedelta(days=7)).isoformat(),
        "eligibility": {}, "weight": 1, "status": "active",
    }
    doc.update(overrides)
    return doc


def customer(cid: str = "c1", **kw: Any) -> CustomerFacts:
    defaults: dict[str, Any] = {"known": True, "stage": "repeat", "country": "Germany", "orders": 5, "spend": 200.0}
    defaults.update(kw)
    return CustomerFacts(cid, **defaults)


@pytest.fixture
def book() -> PromotionBook:
    return PromotionBook(clock=lambda: NOW.timestamp())


# -- definitions ---------------------------------------------------------------------------------------
def test_crud_round_trip(redis_client: redis.Redis, book: PromotionBook) -> None:
    cat = catalogue()
    promo, created = book.put(redis_client, "mugs", body(), cat, STAGES)
    assert created and promo.status == "active"
    got, deleted = book.get(redis_client, "mugs")
    assert not deleted
    doc = got.to_document()
    assert doc["items"] == ["A"] and doc["offer"] == {"text": "10% off mugs", "percent_off": 10}
    assert doc["starts_at"].endswith("Z") and doc["cap"] is None and doc["budget"] is None
    first_created = doc["created_at"]

    _, created = book.put(redis_client, "mugs", body(name="Mug fortnight", weight=2.5), cat, STAGES)
    assert not created
    again = book.get(redis_client, "mugs")[0].to_document()
    assert again["name"] == "Mug fortnight" and again["weight"] == 2.5 and again["created_at"] == first_created
    assert [p.promotion_id for p in book.list(redis_client)] == ["mugs"]

    book.delete(redis_client, "mugs")
    assert book.list(redis_client) == []
    with pytest.raises(Exception, match="does not exist"):
        book.get(redis_client, "mugs")
    assert book.report(redis_client, "mugs")["status"] == "deleted"
    with pytest.raises(Exception, match="does not exist"):
        book.delete(redis_client, "mugs")


def test_purge_removes_definition_and_counters(redis_client: redis.Redis, book: PromotionBook) -> None:
    cat = catalogue()
    book.put(redis_client, "mugs", body(cap={"impressions": 5, "days": 1}), cat, STAGES)
    served = book.serve(redis_client, book.candidates(redis_client, customer(), cat, np.arange(6.0)), "c1", 1)
    assert len(served) == 1
    assert redis_client.exists(keys.promotion_stats("mugs"), keys.promotion_cap("mugs", "c1")) == 2
    book.delete(redis_client, "mugs")
    assert redis_client.exists(keys.promotion_stats("mugs")) == 1
    book.delete(redis_client, "mugs", purge=True)
    assert list(redis_client.scan_iter(match=keys.promotion_pattern("mugs"))) == []
    with pytest.raises(Exception, match="does not exist"):
        book.report(redis_client, "mugs")


@pytest.mark.parametrize(("overrides", "field"), [
    ({"ends_at": (NOW - timedelta(days=2)).isoformat()}, "ends_at"),
    ({"items": ["A", "NOPE"]}, "items"),
    ({"categories": ["garden"]}, "categories"),
    ({"cap": {"impressions": -1, "days": 7}}, "cap.impressions"),
    ({"cap": {"impressions": 2, "days": 0}}, "cap.days"),
    ({"budget": {"impressions": -5}}, "budget.impressions"),
    ({"offer": {"text": "x", "percent_off": 10, "amount_off": 5}}, "offer"),
    ({"offer": {"text": "x", "percent_off": 150}}, "offer.percent_off"),
    ({"offer": {"text": " "}}, "offer.text"),
    ({"weight": 0}, "weight"),
    ({"weight": float("nan")}, "weight"),
    ({"status": "live"}, "status"),
    ({"name": ""}, "name"),
    ({"eligibility": {"journey_stages": ["vip"]}}, "eligibility.journey_stages"),
    ({"eligibility": {"min_orders": -1}}, "eligibility.min_orders"),
    ({"eligibility": {"min_spend": -0.5}}, "eligibility.min_spend"),
])
def test_invalid_definitions_name_the_field(redis_client: redis.Redis, book: PromotionBook,
                                             overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(DefinitionError) as info:
        book.put(redis_client, "p1", body(**overrides), catalogue(), STAGES)
    assert field in info.value.fields
    assert info.value.status == 400 and "json" in info.value.details
    assert book.list(redis_client) == []


def test_invalid_identifier(redis_client: redis.Redis, book: PromotionBook) -> None:
    for bad in ("", "a b", "x{y}", "a:b", "*", "-lead", "x" * 65):
        with pytest.raises(DefinitionError) as info:
            book.put(redis_client, bad, body(), catalogue(), STAGES)
        assert "promotion_id" in info.value.fields


def test_items_unchecked_without_a_model(redis_client: redis.Redis, book: PromotionBook) -> None:
    promo, _ = book.put(redis_client, "p1", body(items=["ANYTHING"]), None, STAGES)
    assert promo.items == ("ANYTHING",)


def test_definition_change_reaches_other_processes_within_the_poll(redis_client: redis.Redis) -> None:
    """Two stores stand for two API processes; the second sees a change once its poll interval passed."""
    clock = [0.0]
    from service.domain.promotions import Promotion

    writer = PromotionBook()
    reader: DefinitionStore[Promotion] = DefinitionStore(
        keys.PROMOTIONS, keys.PROMOTIONS_DELETED, keys.PROMOTIONS_REV, Promotion.from_document, poll_s=0.5,
        clock=lambda: clock[0])
    assert reader.cached(redis_client) == {}
    writer.put(redis_client, "p1", body(), catalogue(), STAGES)
    clock[0] = 0.2
    assert reader.cached(redis_client) == {}  # within the poll interval: the cached copy
    clock[0] = 0.6
    assert set(reader.cached(redis_client)) == {"p1"}
    writer.delete(redis_client, "p1")
    clock[0] = 1.2
    assert reader.cached(redis_client) == {}


# -- eligibility and ranking ---------------------------------------------------------------------------
def _ranked(book_: PromotionBook, redis_client: redis.Redis, who: CustomerFacts, scores: np.ndarray | None,
            inactive: frozenset[int] = frozenset()) -> list[str]:
    cands = book_.candidates(redis_client, who, catalogue(), scores, inactive)
    return [c.promotion.promotion_id for c in cands]


def test_eligibility_rules(redis_client: redis.Redis, book: PromotionBook) -> None:
    cat = catalogue()
    defs = {
        "all": {},
        "stage": {"journey_stages": ["first-time buyer", "lapsed"]},
        "country": {"countries": ["germany"]},
        "orders": {"min_orders": 6},
        "spend": {"min_spend": 150},
        "allow": {"customers": ["vip1"]},
    }
    for pid, rules in defs.items():
        book.put(redis_client, pid, body(eligibility=rules), cat, STAGES)
    book.put(redis_client, "draft", body(status="draft"), cat, STAGES)
    book.put(redis_client, "paused", body(status="paused"), cat, STAGES)
    book.put(redis_client, "future", body(starts_at=(NOW + timedelta(days=1)).isoformat(),
                                          ends_at=(NOW + timedelta(days=2)).isoformat()), cat, STAGES)
    book.put(redis_client, "over", body(starts_at=(NOW - timedelta(days=3)).isoformat(),
                                        ends_at=NOW.isoformat()), cat, STAGES)
    scores = np.zeros(6)
    assert set(_ranked(book, redis_client, customer(), scores)) == {"all", "country", "spend"}
    assert set(_ranked(book, redis_client, customer("vip1", stage="lapsed", country="France", orders=9,
                                                    spend=10.0), scores)) == {"all", "stage", "orders", "allow"}
    unknown = customer("anon", known=False, stage="new", country=None, orders=0, spend=0.0)
    assert set(_ranked(book, redis_client, unknown, None)) == {"all"}


def test_ranking_by_affinity_times_weight(redis_client: redis.Redis, book: PromotionBook) -> None:
    cat = catalogue()
    book.put(redis_client, "mugs", body(items=["A", "B"]), cat, STAGES)
    book.put(redis_client, "home", body(items=[], categories=["home"]), cat, STAGES)
    book.put(redis_client, "teapot", body(items=["E"], weight=3), cat, STAGES)
    # the customer's scores: B best, then D, F, C, A, E
    scores = np.asarray([0.2, 0.9, 0.3, 0.8, 0.1, 0.5])
    cands = book.candidates(redis_client, customer(), cat, scores)
    by_id = {c.promotion.promotion_id: c for c in cands}
    assert by_id["mugs"].item == "B" and by_id["mugs"].affinity == pytest.approx(5 / 6)
    assert by_id["home"].item == "D" and by_id["home"].affinity == pytest.approx(4 / 6)
    assert by_id["teapot"].score == pytest.approx(3 * 0 / 6)
    assert [c.promotion.promotion_id for c in cands] == ["mugs", "home", "teapot"]
    assert "Blue mug (B)" in by_id["mugs"].reason and "top 17%" in by_id["mugs"].reason
    # weights matter: a teapot lover
    scores = np.asarray([0.2, 0.3, 0.1, 0.4, 0.95, 0.5])
    assert book.candidates(redis_client, customer(), cat, scores)[0].promotion.promotion_id == "teapot"
    # an inactive item is never the reason, and a promotion of only inactive items is not offered
    cands = book.candidates(redis_client, customer(), cat, np.asarray([0.2, 0.9, 0.3, 0.8, 0.1, 0.5]),
                            frozenset({1, 4}))
    assert {c.promotion.promotion_id: c.item for c in cands} == {"mugs": "A", "home": "D"}


def test_unknown_customers_ranked_by_popularity(redis_client: redis.Redis, book: PromotionBook) -> None:
    cat = catalogue()
    book.put(redis_client, "mugs", body(items=["A", "B"]), cat, STAGES)
    book.put(redis_client, "candles", body(items=["C"]), cat, STAGES)
    book.put(redis_client, "lamps", body(items=["D"]), cat, STAGES)
    cands = book.candidates(redis_client, customer("x", known=False, stage="new", orders=0, spend=0), cat, None)
    assert [c.promotion.promotion_id for c in cands] == ["candles", "mugs", "lamps"]
    assert [round(c.affinity, 3) for c in cands] == [1.0, 0.667, 0.0]
    assert "best seller #1" in cands[0].reason and "no purchase history" in cands[2].reason


def test_a_site_wide_promotion_needs_no_target_items(redis_client: redis.Redis, book: PromotionBook) -> None:
    """No items and no categories: the offer covers the whole catalogue (its active items)."""
    cat = catalogue()
    promo, _ = book.put(redis_client, "sitewide", body(items=[], categories=[], name="Black Friday"), cat, STAGES)
    assert promo.site_wide and promo.to_document()["items"] == [] and promo.to_document()["categories"] == []
    scores = np.asarray([0.2, 0.9, 0.3, 0.8, 0.1, 0.5])
    (known,) = book.candidates(redis_client, customer(), cat, scores)
    assert known.item == "B" and known.reason.startswith("site-wide offer; ")
    (known,) = book.candidates(redis_client, customer(), cat, scores, frozenset({1}))
    assert known.item == "D", "an inactive item is never the reason"
    (new,) = book.candidates(redis_client, customer("x", known=False, stage="new", orders=0, spend=0), cat, None)
    assert new.item == "C" and new.affinity == 1.0 and "best seller #1" in new.reason


def test_rank_without_model_keeps_weights(book: PromotionBook) -> None:
    from service.domain.promotions import Promotion

    p1 = Promotion.from_document({"promotion_id": "a", **body(weight=1)})
    p2 = Promotion.from_document({"promotion_id": "b", **body(weight=2)})
    out = rank([p1, p2], customer(), None, None, NOW, index=TargetIndex())
    assert [c.promotion.promotion_id for c in out] == ["b", "a"]


# -- serving: caps, budgets, redemptions ---------------------------------------------------------------
def test_serve_counts_and_skips_capped(redis_client: redis.Redis) -> None:
    clock = [NOW.timestamp()]
    book = PromotionBook(clock=lambda: clock[0])
    cat = catalogue()
    book.put(redis_client, "top", body(items=["B"], cap={"impressions": 1, "days": 1}), cat, STAGES)
    book.put(redis_client, "second", body(items=["D"]), cat, STAGES)
    book.put(redis_client, "third", body(items=["A"]), cat, STAGES)
    scores = np.asarray([0.2, 0.9, 0.3, 0.8, 0.1, 0.5])

    def serve(n: int) -> list[str]:
        cands = book.candidates(redis_client, customer(), cat, scores)
        return [s.candidate.promotion.promotion_id for s in book.serve(redis_client, cands, "c1", n)]

    assert serve(2) == ["top", "second"]
    assert serve(2) == ["second", "third"]  # "top" is at its cap: the next one fills the place
    clock[0] += 86_400 + 1
    assert serve(1) == ["top"]  # the window slid past the first impression
    stats = redis_client.hgetall(keys.promotion_stats("top"))
    assert stats[b"impressions"] == b"2" and stats[b"pos:1"] == b"2"


def test_frequency_cap_holds_under_200_concurrent_requests(redis_client: redis.Redis, redis_url: str) -> None:
    book = PromotionBook(clock=lambda: NOW.timestamp())
    cat = catalogue()
    book.put(redis_client, "capped", body(cap={"impressions": 3, "days": 7}), cat, STAGES)
    barrier = threading.Barrier(50)
    pool = redis.ConnectionPool.from_url(redis_url, max_connections=64)

    def request(_: int) -> int:
        client = redis.Redis(connection_pool=pool)
        cands = book.candidates(client, customer("same"), cat, np.arange(6.0))
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=5)
        return len(book.serve(client, cands, "same", 3))

    with ThreadPoolExecutor(50) as pool_:
        served = sum(pool_.map(request, range(200)))
    assert served == 3
    assert redis_client.hget(keys.promotion_stats("capped"), "impressions") == b"3"
    assert redis_client.zcard(keys.promotion_cap("capped", "same")) == 3


def test_budget_holds_under_200_concurrent_requests(redis_client: redis.Redis, redis_url: str) -> None:
    book = PromotionBook(clock=lambda: NOW.timestamp())
    cat = catalogue()
    book.put(redis_client, "budgeted", body(budget={"impressions": 57}), cat, STAGES)
    pool = redis.ConnectionPool.from_url(redis_url, max_connections=64)

    def request(i: int) -> int:
        client = redis.Redis(connection_pool=pool)
        who = customer(f"c{i}")
        return len(book.serve(client, book.candidates(client, who, cat, np.arange(6.0)), who.customer_id, 3))

    with ThreadPoolExecutor(50) as pool_:
        served = sum(pool_.map(request, range(200)))
    assert served == 57
    assert redis_client.hget(keys.promotion_stats("budgeted"), "impressions") == b"57"


def test_redemptions_counted_once_and_budget(redis_client: redis.Redis, book: PromotionBook) -> None:
    cat = catalogue()
    book.put(redis_client, "r", body(budget={"redemptions": 2}), cat, STAGES)
    decisions = []
    for i in range(3):
        who = customer(f"c{i}")
        served = book.serve(redis_client, book.candidates(redis_client, who, cat, np.arange(6.0)), who.customer_id, 1)
        decisions.append(served[0].decision_id)
    assert book.feedback(redis_client, "r", decisions[0], "conversion", "c0") == "counted"
    assert book.feedback(redis_client, "r", decisions[0], "conversion", "c0") == "duplicate"
    assert book.feedback(redis_client, "r", decisions[0], "click", "c0") == "counted"
    assert book.feedback(redis_client, "r", decisions[1], "conversion", "someone-else") == "mismatch"
    assert book.feedback(redis_client, "r", "p-0000000000000000-r", "conversion", "c1") == "unknown"
    assert book.feedback(redis_client, "r", decisions[1], "view", "c1") == "ignored"
    assert book.feedback(redis_client, "r", decisions[1], "conversion", "c1") == "counted"
    report = book.report(redis_client, "r")
    assert (report["impressions"], report["clicks"], report["conversions"]) == (3, 1, 2)
    assert report["budget"]["redemptions_left"] == 0
    # redemption budget spent: no longer served
    who = customer("c9")
    assert book.serve(redis_client, book.candidates(redis_client, who, cat, np.arange(6.0)), "c9", 1) == []


def test_served_answer_shape(redis_client: redis.Redis, book: PromotionBook) -> None:
    cat = catalogue()
    book.put(redis_client, "mugs", body(), cat, STAGES)
    served = book.serve(redis_client, book.candidates(redis_client, customer(), cat, np.arange(6.0)), "c1", 3)
    answer = served[0].to_answer()
    assert set(answer) >= {"promotion_id", "name", "offer", "score", "reason", "decision_id"}
    assert answer["decision_id"].startswith("p-") and answer["decision_id"].endswith("-mugs")
    assert redis_client.ttl(keys.promotion_decision("mugs", answer["decision_id"])) > 0
