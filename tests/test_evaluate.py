"""The evaluator's arithmetic on hand-computed cases, its split rules, and the matrix it is built on."""

from __future__ import annotations

import json
import math
from typing import Any, Self

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scoring.history import PurchaseHistory, to_day
from scoring.models.base import Recommender
from training.evaluate import (
    EvaluationResult,
    HoldoutError,
    Split,
    evaluate,
    evaluate_model,
    make_split,
    ranking_metrics,
    split_log,
    top_k,
)
from training.matrix import build_history, history_for


def log(rows: list[tuple[str, str, str, str, float]]) -> pd.DataFrame:
    """A purchase log from (customer, item, day, order, quantity) tuples."""
    frame = pd.DataFrame(rows, columns=["customer_id", "item_id", "timestamp", "order_id", "quantity"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    frame["price"] = 1.0
    frame["country"] = "UK"
    return frame


def truth(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    data = [(r, c) for r, items in enumerate(rows) for c in items]
    r, c = zip(*data, strict=True) if data else ((), ())
    return sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(len(rows), n_items))


# -- metrics ------------------------------------------------------------------------------------------


def test_metrics_hand_computed() -> None:
    ranked = np.array([[1, 2, 3]])
    m = ranking_metrics(ranked, truth([[2, 5]], 10), n_items=10)
    assert m.precision == pytest.approx(1 / 3)
    assert m.recall == pytest.approx(1 / 2)
    # DCG = 1/log2(3); ideal DCG of min(2, 3) hits = 1 + 1/log2(3)
    assert m.ndcg == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert m.map == pytest.approx((1 / 2) / 2)  # precision 1/2 at the hit, divided by min(|truth|, k)
    assert m.hit_rate == 1.0
    assert m.coverage == pytest.approx(3 / 10)
    assert m.customers == 1


def test_metrics_average_over_customers() -> None:
    ranked = np.array([[0, 1], [2, 3]])
    m = ranking_metrics(ranked, truth([[0, 1], [4]], 5), n_items=5)
    assert m.ndcg == pytest.approx(0.5)  # perfect list and a miss
    assert m.map == pytest.approx(0.5)
    assert m.precision == pytest.approx(0.5)
    assert m.recall == pytest.approx(0.5)
    assert m.hit_rate == pytest.approx(0.5)
    assert m.coverage == pytest.approx(4 / 5)


def test_metrics_second_and_third_position() -> None:
    m = ranking_metrics(np.array([[9, 0, 1]]), truth([[0, 1]], 10), n_items=10)
    ideal = 1 + 1 / math.log2(3)
    assert m.ndcg == pytest.approx((1 / math.log2(3) + 1 / 2) / ideal)
    assert m.map == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_metrics_without_customers() -> None:
    m = ranking_metrics(np.zeros((0, 10), dtype=np.int64), truth([], 4), n_items=4)
    assert m.customers == 0 and m.ndcg == 0.0


def test_top_k_best_first_with_stable_ties() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.9, -np.inf], [1.0, 1.0, 0.5, 0.0, 2.0]], dtype=np.float32)
    np.testing.assert_array_equal(top_k(scores, 3), [[1, 3, 2], [4, 0, 1]])
    np.testing.assert_array_equal(top_k(scores, 9), [[1, 3, 2, 0, 4], [4, 0, 1, 2, 3]])


def test_top_k_on_wide_catalogues_matches_a_full_sort() -> None:
    rng = np.random.default_rng(1)
    scores = rng.random((20, 30_011), dtype=np.float32)  # ragged tail after the last full block
    scores[0, -3:] = 2.0  # best items in the tail
    scores[1, :] = -np.inf
    scores[1, [5, 29_000]] = [1.0, 3.0]  # fewer finite scores than k
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    got = top_k(scores, 10)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[2:], expected[2:])
    assert list(got[1][:2]) == [29_000, 5] and len(set(got[1])) == 10


# -- split rules --------------------------------------------------------------------------------------

LOG = log([
    # customer a: bought x twice and y before; in the holdout re-buys x and discovers z
    ("a", "x", "2024-01-01", "o1", 1), ("a", "x", "2024-02-01", "o2", 2), ("a", "y", "2024-02-01", "o2", 1),
    ("a", "x", "2024-03-20", "o9", 1), ("a", "z", "2024-03-21", "o9", 1),
    # customer b: history, then only a brand-new item (unknown before the cutoff) in the holdout
    ("b", "z", "2024-01-10", "o3", 1), ("b", "new", "2024-03-25", "o10", 1),
    # customer c: only re-buys in the holdout (no discovery truth)
    ("c", "y", "2024-01-15", "o4", 1), ("c", "y", "2024-03-15", "o11", 1),
    # customer d: first purchase in the holdout (no history to score)
    ("d", "x", "2024-03-18", "o12", 1),
    # customer e: history, nothing in the holdout
    ("e", "z", "2024-02-20", "o5", 1),
])


def test_split_log_cutoff_is_latest_minus_holdout() -> None:
    before, after, cutoff = split_log(LOG, holdout_days=30)
    assert cutoff == pd.Timestamp("2024-02-24")
    assert (before["timestamp"] < cutoff).all() and (after["timestamp"] >= cutoff).all()
    assert len(before) + len(after) == len(LOG)


def test_make_split_truth_and_customers() -> None:
    split = make_split(LOG, holdout_days=30)
    customers, items = list(split.customer_ids), list(split.item_ids)
    assert customers == ["a", "b", "c", "e"]  # d has no history before the cutoff
    assert items == ["x", "y", "z"]  # "new" did not exist before the cutoff
    evaluated = [customers[r] for r in split.rows]
    assert evaluated == ["a", "c"]  # b's only holdout item is unknown, e bought nothing
    a = customers.index("a")
    assert sorted(items[i] for i in split.truth[a].indices) == ["x", "z"]
    # nothing after the cutoff leaks into training, and recency is measured at the cutoff
    assert split.train.last_day.data.max() < to_day(pd.DatetimeIndex([split.cutoff]))[0]
    assert split.train.now_day == pytest.approx(to_day(pd.DatetimeIndex([split.cutoff]))[0])
    assert split.train.orders[a, items.index("x")] == 2


class FixedScores(Recommender):
    """Scores every item by a fixed per-item value (plus a bonus on already-bought items)."""

    name = "fixed"

    def __init__(self, values: np.ndarray, bought_bonus: float = 0.0) -> None:
        super().__init__()
        self.values, self.bonus = values.astype(np.float32), bought_bonus

    def fit(self, history: PurchaseHistory, *, progress: bool = False) -> None:
        pass

    def score(self, history: PurchaseHistory) -> np.ndarray:
        scores = np.tile(self.values, (history.shape[0], 1))
        return scores + self.bonus * (history.orders.toarray() > 0)

    def similar_items(self, item: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"values": self.values}

    @classmethod
    def from_arrays(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> Self:
        return cls(arrays["values"])


def test_views_overall_and_discovery() -> None:
    split = make_split(LOG, holdout_days=30)
    # item order x, y, z; bought items get a large bonus, so overall ranks own items first
    model = FixedScores(np.array([0.2, 0.1, 0.0]), bought_bonus=10.0)
    overall, discovery = evaluate_model(model, split, k=1)
    # overall: a gets [x] (truth x, z) -> hit; c gets [y] (truth y) -> hit
    assert overall.customers == 2
    assert overall.hit_rate == 1.0
    assert overall.recall == pytest.approx((1 / 2 + 1) / 2)
    # discovery: only a has a new item (z); bought x and y are filtered, so a's list is [z]
    assert discovery.customers == 1
    assert discovery.ndcg == 1.0


def test_discovery_filters_already_bought_items() -> None:
    split = make_split(LOG, holdout_days=30)
    model = FixedScores(np.array([5.0, 4.0, 0.0]))  # x and y above z for everybody
    _, discovery = evaluate_model(model, split, k=1)
    assert discovery.hit_rate == 1.0  # a's x and y are removed, z is left on top


def test_evaluate_end_to_end_is_json_and_formats() -> None:
    rng = np.random.default_rng(3)
    rows = []
    for day in range(120):
        for customer in range(30):
            if rng.random() < 0.15:
                group = customer % 3
                items = rng.choice(5, size=2, replace=False) + 5 * group
                stamp = (pd.Timestamp("2024-01-01") + pd.Timedelta(days=day)).isoformat()
                rows += [(f"c{customer}", f"i{i}", stamp, f"o{day}-{customer}", 1.0) for i in items]
    result = evaluate(log(rows), "hybrid", {"regularization": 5.0}, holdout_days=30, k=10)
    assert isinstance(result, EvaluationResult)
    assert result.model.algorithm == "hybrid" and result.baseline.algorithm == "popular"
    assert result.model.params["cf"] == "ease"
    assert result.customers > 0 and result.items == 15
    assert result.model.overall.ndcg > result.baseline.overall.ndcg
    restored = json.loads(json.dumps(result.to_dict()))
    assert restored["model"]["overall"]["ndcg"] == pytest.approx(result.model.overall.ndcg)
    table = result.format()
    assert "overall" in table and "discovery" in table and "popular" in table and "ndcg@10" in table


def test_evaluate_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        split_log(LOG, holdout_days=0)
    with pytest.raises(HoldoutError, match=r"nothing is left before a 400-day holdout \(cutoff "):
        make_split(LOG, holdout_days=400)
    with pytest.raises(ValueError, match="unknown algorithm"):
        evaluate(LOG, "nope")


def test_split_is_a_dataclass_of_training_index() -> None:
    split = make_split(LOG, holdout_days=30)
    assert isinstance(split, Split)
    assert split.truth.shape == split.train.shape
    assert split.eligible == len(split.rows) == 2


def test_large_evaluations_sample_customers_not_items() -> None:
    sampled = make_split(LOG, holdout_days=30, max_customers=1)
    assert sampled.eligible == 2 and len(sampled.rows) == 1
    assert sampled.rows[0] in make_split(LOG, holdout_days=30).rows
    again = make_split(LOG, holdout_days=30, max_customers=1)
    np.testing.assert_array_equal(sampled.rows, again.rows)  # same customers for model and baseline
    assert sampled.truth.shape[1] == 3  # the whole catalogue is still ranked


# -- the matrix ---------------------------------------------------------------------------------------


def test_build_history_aggregates_pairs() -> None:
    frame = log([
        ("b", "y", "2024-01-01", "o1", 2), ("b", "y", "2024-01-01", "o1", 3),  # one order, two lines
        ("b", "y", "2024-01-05", "o2", 1), ("a", "y", "2024-01-03", "o3", 4),
        ("a", "x", "2024-01-02", "o3", 1),
    ])
    history, customers, items = build_history(frame)
    assert list(customers) == ["a", "b"] and list(items) == ["x", "y"]
    assert customers.dtype.kind == "U" and items.dtype.kind == "U"
    assert history.orders.toarray().tolist() == [[1, 1], [0, 2]]
    assert history.quantity.toarray().tolist() == [[1, 4], [0, 6]]
    day = to_day(pd.DatetimeIndex(["2024-01-05", "2024-01-03", "2024-01-02"]))
    assert history.last_day[1, 1] == day[0] and history.last_day[0, 1] == day[1]
    assert history.last_day[0, 0] == day[2]
    assert history.now_day == day[0]
    assert history.orders.dtype == np.float32 and history.orders.has_sorted_indices


def test_build_history_matches_pandas_groupby() -> None:
    rng = np.random.default_rng(0)
    n = 5000
    frame = log([
        (f"c{rng.integers(50)}", f"i{rng.integers(80)}", f"2024-01-{rng.integers(1, 29):02d}",
         f"o{rng.integers(400)}", float(rng.integers(1, 4)))
        for _ in range(n)
    ])
    history, customers, items = build_history(frame)
    expected = frame.groupby(["customer_id", "item_id"]).agg(
        orders=("order_id", "nunique"), quantity=("quantity", "sum"), last=("timestamp", "max")
    )
    r = pd.Index(customers).get_indexer(expected.index.get_level_values(0))
    c = pd.Index(items).get_indexer(expected.index.get_level_values(1))
    assert history.orders.nnz == len(expected)
    np.testing.assert_array_equal(np.asarray(history.orders[r, c]).ravel(), expected["orders"])
    np.testing.assert_array_equal(np.asarray(history.quantity[r, c]).ravel(), expected["quantity"])
    np.testing.assert_array_equal(np.asarray(history.last_day[r, c]).ravel(), to_day(expected["last"]))


def test_build_history_accepts_categorical_ids_and_now() -> None:
    frame = LOG.astype({"customer_id": "category", "item_id": "category", "order_id": "category"})
    history, customers, items = build_history(frame, now=pd.Timestamp("2024-04-01"))
    plain, plain_customers, _ = build_history(LOG)
    assert list(customers) == list(plain_customers) and isinstance(items[0], str)
    assert (history.orders != plain.orders).nnz == 0
    assert history.now_day == to_day(pd.DatetimeIndex(["2024-04-01"]))[0]


def test_history_for_aligns_and_drops_unknown() -> None:
    history = history_for(LOG, np.array(["c", "a"]), np.array(["z", "x"]))
    assert history.shape == (2, 2)
    assert history.orders.toarray().tolist() == [[0, 0], [1, 3]]


def test_empty_log_gives_empty_history() -> None:
    history = history_for(LOG.iloc[:0], np.array(["a"]), np.array(["x"]), now=pd.Timestamp("2024-01-01"))
    assert history.shape == (1, 1) and history.orders.nnz == 0
