"""Report arithmetic on hand-computed cases: Wilson intervals, IPS estimates (also through the real Lua
scripts that accumulate them in Redis), slot and promotion reports."""

from __future__ import annotations

import math

import pytest
import redis

from service.domain import reports
from service.domain.bandit import Choice
from service.domain.messages import MessageSlot, slot_report
from service.domain.promotions import Promotion, promotion_report
from service.domain.targeting import new_decision_id
from service.infrastructure.bandit_store import Bandit
from service.infrastructure.message_board import MessageBoard
from service.infrastructure.scripts import run_scripts


def test_wilson_hand_computed() -> None:
    # 5 of 20: p = .25, z² = 3.841459; centre = (.25 + z²/40)/(1 + z²/20) = .2902804,
    # half width = z·sqrt(.25·.75/20 + z²/1600)/(1 + z²/20) = .1784196 (tables: 0.1119 - 0.4687)
    low, high = reports.wilson(5, 20)
    assert low == pytest.approx(0.111862, abs=1e-6) and high == pytest.approx(0.468701, abs=1e-6)
    # 0 of 10: upper bound z²/n / (1 + z²/n) = .3841459/1.3841459
    assert reports.wilson(0, 10) == pytest.approx((0.0, 0.277533), abs=1e-6)
    assert reports.wilson(10, 10) == pytest.approx((0.722467, 1.0), abs=1e-6)
    assert reports.wilson(0, 0) == (0.0, 1.0)
    assert reports.rate(5, 20) == {"value": 0.25, "low": 0.111862, "high": 0.468701}
    assert reports.rate(0, 0)["value"] is None


def test_mean_estimate_hand_computed() -> None:
    # values 1, 2, 3, 6: mean 3, sample variance (4+1+0+9)/3 = 14/3, se = sqrt(14/3/4)
    est = reports.mean_estimate(12, 1 + 4 + 9 + 36, 4)
    assert est["value"] == 3
    assert est["std_error"] == pytest.approx(math.sqrt(14 / 3 / 4), abs=1e-6)
    assert est["low"] == pytest.approx(3 - reports.Z95 * math.sqrt(14 / 12), abs=1e-6)
    assert reports.mean_estimate(0, 0, 0)["value"] is None


# Four logged decisions of a 2-variant slot with exploration 0.2 (so p = 0.1 + 0.8·q):
#   1. v0, q = 0.9 -> p = 0.82, rewarded   2. v1, q = 0.1 -> p = 0.18, rewarded
#   3. v0, q = 0.5 -> p = 0.50              4. v1, q = 1.0 -> p = 0.90
DECISIONS = [("v0", 0.9, True, True), ("v1", 0.1, False, True), ("v0", 0.5, False, False),
             ("v1", 1.0, False, False)]
V_LEARNED = (0.9 / 0.82 + 0.1 / 0.18) / 4  # 0.413279
V_UNIFORM = (0.5 / 0.82 + 0.5 / 0.18) / 4  # 0.846884
SNIPS_LEARNED = (0.9 / 0.82 + 0.1 / 0.18) / (0.9 / 0.82 + 0.1 / 0.18 + 1.0 + 1.0 / 0.9)


def test_ips_summary_hand_computed() -> None:
    wl = [q / (0.1 + 0.8 * q) for _, q, _, _ in DECISIONS]
    wu = [0.5 / (0.1 + 0.8 * q) for _, q, _, _ in DECISIONS]
    r = [1.0 if rewarded else 0.0 for *_, rewarded in DECISIONS]
    sums = {"decisions": 4,
            "ips_learned": sum(w * x for w, x in zip(wl, r, strict=True)),
            "ips_learned_sq": sum((w * x) ** 2 for w, x in zip(wl, r, strict=True)),
            "ips_w_learned": sum(wl),
            "ips_uniform": sum(w * x for w, x in zip(wu, r, strict=True)),
            "ips_uniform_sq": sum((w * x) ** 2 for w, x in zip(wu, r, strict=True)),
            "ips_w_uniform": sum(wu)}
    out = reports.ips_summary(sums)
    assert out["learned"]["value"] == pytest.approx(V_LEARNED, abs=1e-6)
    assert out["uniform"]["value"] == pytest.approx(V_UNIFORM, abs=1e-6)
    assert out["learned"]["snips"] == pytest.approx(SNIPS_LEARNED, abs=1e-6)
    assert out["lift"] == pytest.approx(V_LEARNED / V_UNIFORM, abs=1e-4)
    assert reports.ips_summary({})["learned"]["value"] is None


def test_slot_report_through_redis_scripts(redis_client: redis.Redis) -> None:
    """The same four decisions recorded and rewarded by the real Lua scripts give the same report."""
    board = MessageBoard(Bandit(), poll_s=0.0)
    slot, _ = board.put(redis_client, "hand", {"variants": [{"id": "v0", "content": "a", "tone": "value"},
                                                            {"id": "v1", "content": "b"}],
                                               "exploration": 0.2, "sticky_days": 0})
    for i, (variant, q, explore, rewarded) in enumerate(DECISIONS):
        k = slot.variant_ids.index(variant)
        choice = Choice(new_decision_id("m", "hand"), k, 0.1 + 0.8 * q, q, explore, None, "")
        run_scripts(redis_client, [board.bandit.record("hand", slot.variant_ids, choice, f"c{i}", 0)])
        if rewarded:
            assert board.feedback(redis_client, "hand", choice.decision_id, "click", f"c{i}") == "rewarded"
            board.feedback(redis_client, "hand", choice.decision_id, "conversion", f"c{i}")
    report = board.report(redis_client, "hand")
    v0, v1 = report["variants"]
    assert (v0["decisions"], v0["clicks"], v0["conversions"], v0["rewards"], v0["explore_decisions"]) == (2, 1, 1, 1, 1)
    assert (v1["decisions"], v1["rewards"], v1["explore_decisions"]) == (2, 1, 0)
    assert v0["click_rate"]["value"] == 0.5 and v0["click_rate"]["low"] == pytest.approx(0.094531, abs=1e-6)
    assert report["totals"]["decisions"] == 4 and report["totals"]["rewards"] == 2
    assert report["policy"]["uniform_share"]["reward_rate"]["value"] == 1.0
    assert report["policy"]["bandit_share"]["reward_rate"]["value"] == pytest.approx(1 / 3, abs=1e-6)
    ips = report["off_policy"]
    assert ips["decisions"] == 4
    assert ips["learned"]["value"] == pytest.approx(V_LEARNED, abs=1e-6)
    assert ips["uniform"]["value"] == pytest.approx(V_UNIFORM, abs=1e-6)
    assert ips["learned"]["snips"] == pytest.approx(SNIPS_LEARNED, abs=1e-6)


def test_slot_report_lists_removed_variants() -> None:
    slot = MessageSlot.from_document({"slot": "s", "variants": [{"id": "a", "content": "x"},
                                                                {"id": "b", "content": "y"}]})
    counters = {"decisions": 30, "decisions:a": 10, "rewards:a": 2, "decisions:b": 5, "decisions:old": 15,
                "rewards:old": 3, "impressions:old": 20}
    report = slot_report(slot, counters)
    assert [(r["id"], r["removed"]) for r in report["variants"]] == [("a", False), ("b", False), ("old", True)]
    assert report["totals"]["decisions"] == 30 and report["totals"]["rewards"] == 5
    assert report["variants"][2]["reward_rate"]["value"] == 0.2
    assert report["variants"][1]["reward_rate"]["value"] == 0.0


def test_promotion_report_arithmetic() -> None:
    promo = Promotion.from_document({
        "promotion_id": "p", "name": "P", "items": ["A"], "offer": {"text": "t"}, "status": "active",
        "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2026-02-01T00:00:00Z",
        "budget": {"impressions": 100, "redemptions": 10}})
    report = promotion_report(promo, {"impressions": 40, "clicks": 8, "redemptions": 2, "pos:1": 30, "pos:2": 10})
    assert report["click_rate"]["value"] == 0.2 and report["conversion_rate"]["value"] == 0.05
    low, high = reports.wilson(8, 40)
    assert (report["click_rate"]["low"], report["click_rate"]["high"]) == (round(low, 6), round(high, 6))
    assert report["budget"] == {"impressions": 100, "impressions_left": 60, "redemptions": 10,
                                "redemptions_left": 8}
    assert report["by_position"] == [{"position": 1, "impressions": 30}, {"position": 2, "impressions": 10}]
    assert report["live"] is False
