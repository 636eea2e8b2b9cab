"""One shared suite run against every registered recommender (in the spirit of implicit's test mixin).

The evaluator, the batch export and the service all use the same model object, so every model must score
any history (batch or single customer, known or new, empty), survive the arrays round trip through Redis
exactly, and rank sensibly on data with an obvious structure.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from scoring.history import CustomerRow, PurchaseHistory
from scoring.models import ALGORITHMS, DEFAULT_ALGORITHM, HYPERPARAMETERS, Reason, Recommender, create, load
from scoring.models.ease import MAX_ITEMS, ease_weights
from scoring.models.hybrid import HybridRecommender

N_ITEMS = 40
GROUP = 10  # items 0-9 are bought together by group A, 10-19 by group B; 20-39 are rare noise
NOW = 20_000.0

# Small, fast settings; every other parameter keeps its default.
FAST: dict[str, dict[str, Any]] = {
    "als": {"factors": 8, "iterations": 10},
    "bpr": {"factors": 8, "iterations": 60, "learning_rate": 0.05},
    "item-knn": {"neighbours": 20},
    "ease": {"regularization": 10.0},
    "hybrid": {"regularization": 10.0},
    "tifu-knn": {"neighbours": 10, "group_size": 3},
    "upcf": {"neighbours": 10, "recency": 3},
}
CASES = [pytest.param((name, FAST.get(name, {})), id=name) for name in ALGORITHMS] + [
    pytest.param(("hybrid", {"cf": "item-knn", "neighbours": 20}), id="hybrid-item-knn"),
    pytest.param(("hybrid", {"regularization": 10.0, "ease_max_items": 10, "ease_head_items": 25}),
                 id="hybrid-ease-head"),
    pytest.param(("hybrid", {"cf": "tifu-knn", "neighbours": 10}), id="hybrid-tifu-knn"),
    pytest.param(("hybrid", {"cf": "tifu-knn", "neighbours": 10, "distance": "euclidean",
                             "group_decay": 0.5}), id="hybrid-tifu-knn-euclidean"),
    pytest.param(("ease", {"regularization": 10.0, "head_items": 25, "head_keep": 6}), id="ease-head"),
    pytest.param(("item-knn", {"similarity": "cosine", "neighbours": 20}), id="item-knn-cosine"),
    pytest.param(("tifu-knn", {"neighbours": 10, "distance": "cosine"}), id="tifu-knn-cosine"),
]
COLLABORATIVE = {"als", "bpr", "item-knn", "ease", "hybrid", "tifu-knn", "upcf"}


def make_history(n_customers: int = 120, seed: int = 7) -> PurchaseHistory:
    """Two customer groups with disjoint baskets plus a little noise; orders and recency vary."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for customer in range(n_customers):
        base = 0 if customer % 2 == 0 else GROUP
        basket = rng.choice(GROUP, size=rng.integers(4, 8), replace=False) + base
        noise = rng.choice(np.arange(2 * GROUP, N_ITEMS), size=rng.integers(0, 2), replace=False)
        items = np.concatenate([basket, noise])
        rows.extend([customer] * len(items))
        cols.extend(items.tolist())
    rows_a, cols_a = np.asarray(rows), np.asarray(cols)
    orders = rng.integers(1, 6, len(rows_a)).astype(float)
    last_day = NOW - rng.integers(0, 200, len(rows_a))
    first_day = last_day - (orders - 1) * rng.integers(1, 40, len(rows_a))  # repeat reasons dated per item
    return PurchaseHistory.from_entries(
        rows_a, cols_a, orders, orders * 3, last_day, (n_customers, N_ITEMS), NOW, first_day
    )


def single(items: list[int], orders: list[float] | None = None, age: float = 5.0) -> PurchaseHistory:
    """The history of one (possibly new) customer."""
    n = len(items)
    counts = np.asarray(orders if orders is not None else [1.0] * n)
    return PurchaseHistory.from_entries(
        np.zeros(n, dtype=np.int64), np.asarray(items, dtype=np.int64), counts, counts,
        np.full(n, NOW - age), (1, N_ITEMS), NOW,
    )


@pytest.fixture(scope="module")
def history() -> PurchaseHistory:
    return make_history()


@pytest.fixture(scope="module", params=CASES)
def fitted(request: pytest.FixtureRequest, history: PurchaseHistory) -> Recommender:
    name, params = request.param
    model = create(name, **params)
    model.fit(history)
    return model


def round_trip(model: Recommender) -> Recommender:
    """What the artifact / Redis path does: JSON params, arrays through .npz bytes, rebuild by name."""
    params = json.loads(json.dumps(model.params))
    buffer = io.BytesIO()
    np.savez(buffer, **model.arrays())
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as stored:
        arrays = {key: stored[key] for key in stored.files}
    return load(model.name, params, arrays)


def test_registry_covers_required_algorithms() -> None:
    assert {"als", "bpr", "item-knn", "popular", "ease", "buy-again", "hybrid"} <= set(ALGORITHMS)
    assert DEFAULT_ALGORITHM == "hybrid"
    for name, cls in ALGORITHMS.items():
        assert cls.name == name
        assert set(HYPERPARAMETERS[name]) == set(create(name).params)


def test_scores_shape_dtype_finite(fitted: Recommender, history: PurchaseHistory) -> None:
    scores = fitted.score(history)
    assert scores.shape == history.shape
    assert scores.dtype == np.float32
    assert np.isfinite(scores).all()


def test_arrays_are_plain_numeric_and_params_json(fitted: Recommender) -> None:
    arrays = fitted.arrays()
    for key, value in arrays.items():
        assert isinstance(value, np.ndarray), key
        assert value.dtype.kind in "biuf", (key, value.dtype)
    json.dumps(fitted.params)


def test_round_trip_gives_identical_scores(fitted: Recommender, history: PurchaseHistory) -> None:
    rebuilt = round_trip(fitted)
    np.testing.assert_array_equal(rebuilt.score(history), fitted.score(history))
    assert rebuilt.params == fitted.params


def test_one_customer_scores_like_the_batch(fitted: Recommender, history: PurchaseHistory) -> None:
    """The service scores one history at a time; batch export scores chunks. Same numbers either way."""
    batch = fitted.score(history)
    for row in (0, 1, 57):
        np.testing.assert_allclose(fitted.score(history.rows([row]))[0], batch[row], rtol=1e-5, atol=1e-6)


def test_similar_items_exclude_the_item(fitted: Recommender) -> None:
    for item in (0, 13, 39):
        ids, scores = fitted.similar_items(item, 5)
        assert len(ids) == len(scores) <= 5
        assert item not in ids
        assert ((ids >= 0) & (ids < N_ITEMS)).all()
        assert (np.diff(scores) <= 0).all()


def test_empty_history_is_scored(fitted: Recommender) -> None:
    scores = fitted.score(PurchaseHistory.empty(3, N_ITEMS, NOW))
    assert scores.shape == (3, N_ITEMS)
    assert np.isfinite(scores).all()


def test_recommends_the_customers_group(fitted: Recommender) -> None:
    """A new customer with a few group-A items gets the other group-A items first."""
    if fitted.name not in COLLABORATIVE:
        pytest.skip("not a collaborative model")
    bought = [0, 1, 2, 3]
    scores = fitted.score(single(bought))[0]
    scores[bought] = -np.inf
    top = np.argsort(-scores)[:4]
    assert np.isin(top, np.arange(GROUP)).sum() >= 3, top


def test_purchase_changes_the_answer_without_refit(fitted: Recommender) -> None:
    if fitted.name == "popular":
        pytest.skip("popularity ignores the customer")
    before = fitted.score(single([0, 1]))[0]
    after = fitted.score(single([0, 1, 12]))[0]
    assert not np.allclose(before, after)


def test_buy_again_ranks_frequent_and_recent_first() -> None:
    model = create("buy-again", half_life=30.0)
    model.fit(make_history())
    frequent = model.score(single([5, 6], orders=[6.0, 1.0]))[0]
    others = np.setdiff1d(np.arange(N_ITEMS), [5, 6])
    assert frequent[5] > frequent[6] > frequent[others].max()


def test_buy_again_fills_with_popular_items_not_id_order(history: PurchaseHistory) -> None:
    """After the customer's own items come the most bought ones (the popularity fallback)."""
    model = create("buy-again")
    model.fit(history)
    scores = model.score(single([30]))[0]
    popularity = np.bincount(history.orders.indices, minlength=N_ITEMS)
    ranked = np.argsort(-scores, kind="stable")
    assert ranked[0] == 30
    others = np.setdiff1d(np.arange(N_ITEMS), [30])
    assert list(popularity[ranked[1:11]]) == sorted(popularity[others], reverse=True)[:10]
    assert [r.kind for r in model.explain_row(CustomerRow.of(single([30]), 0), ranked[:2])] == [
        "repeat-purchase", "popular"]
    old = PurchaseHistory.from_entries(
        np.zeros(2, dtype=np.int64), np.asarray([5, 6]), np.ones(2), np.ones(2),
        np.asarray([NOW - 300, NOW - 1]), (1, N_ITEMS), NOW,
    )
    recent = model.score(old)[0]
    assert recent[6] > recent[5]


def test_hybrid_puts_the_customers_staples_first(history: PurchaseHistory) -> None:
    model = create("hybrid", **FAST["hybrid"])
    model.fit(history)
    scores = model.score(single([3, 25], orders=[8.0, 1.0]))[0]
    assert int(np.argmax(scores)) == 3


def test_hybrid_weights_mean_the_same_for_every_customer(history: PurchaseHistory) -> None:
    """The rebuy part is scaled per customer, so a big wholesaler's 50 orders do not drown the CF part."""
    model = create("hybrid", **FAST["hybrid"])
    model.fit(history)
    bound = 1.0 + model.params["cf_weight"] + model.params["popularity_weight"] + 1e-6
    for orders in (1.0, 50.0):
        scores = model.score(single([3, 4], orders=[orders, orders]))[0]
        assert scores.max() <= bound
        assert scores[3] >= 1.0


def test_hybrid_fits_ease_on_the_head_of_large_catalogues(history: PurchaseHistory) -> None:
    model = create("hybrid", ease_max_items=N_ITEMS - 1, ease_head_items=20)
    model.fit(history)
    assert model.params["cf"] == "ease"
    assert "cf_weights" not in model.arrays()
    assert "cf_weights_data" in model.arrays()
    small = create("hybrid")
    small.fit(history)
    assert "cf_weights" in small.arrays()


def test_ease_head_is_the_dense_closed_form_of_the_head_pruned(history: PurchaseHistory) -> None:
    """Known answer: the head's weights are those of EASE fitted on the head's columns alone, each row
    keeping its largest positive weights; items outside the head get no CF score."""
    head_model = create("ease", regularization=10.0, head_items=20, head_keep=5)
    head_model.fit(history)
    weighted = head_model.weighting.apply(history)
    buyers = np.diff(weighted.tocsc().indptr)
    head = np.sort(np.argsort(-buyers, kind="stable")[:20])
    dense = ease_weights(weighted[:, head], 10.0)
    weights = head_model.weights.toarray()
    outside = np.setdiff1d(np.arange(N_ITEMS), head)
    assert not weights[outside].any() and not weights[:, outside].any()
    block = weights[np.ix_(head, head)]
    for row in range(len(head)):
        kept = np.flatnonzero(block[row])
        assert len(kept) <= 5
        np.testing.assert_allclose(block[row, kept], dense[row, kept], rtol=1e-6)
        if len(kept):
            assert dense[row, kept].min() >= np.sort(dense[row])[-5] - 1e-7
    assert not head_model.score(history)[:, outside].any()


def test_hybrid_refit_resolves_cf_again(history: PurchaseHistory) -> None:
    model = create("hybrid", ease_max_items=N_ITEMS, ease_head_items=20)
    model.fit(history)
    assert "cf_weights" in model.arrays()
    wider = PurchaseHistory.from_entries(
        np.array([0, 1]), np.array([0, N_ITEMS]), np.ones(2), np.ones(2), np.full(2, NOW), (2, N_ITEMS + 1), NOW
    )
    model.fit(wider)
    assert "cf_weights_data" in model.arrays()


def test_hybrid_popularity_falls_back_to_all_time() -> None:
    stale = PurchaseHistory.from_entries(
        np.array([0, 1, 2]), np.array([5, 5, 7]), np.ones(3), np.ones(3), np.full(3, NOW - 100), (3, N_ITEMS), NOW
    )
    model = create("hybrid", popularity_window_days=14.0)
    model.fit(stale)
    newcomer = model.score(PurchaseHistory.empty(1, N_ITEMS, NOW))[0]
    assert int(np.argmax(newcomer)) == 5


def test_hybrid_from_unresolved_params(history: PurchaseHistory) -> None:
    model = create("hybrid", ease_max_items=N_ITEMS - 1)
    model.fit(history)
    rebuilt = HybridRecommender.from_arrays({**model.params, "cf": "auto"}, model.arrays())
    np.testing.assert_array_equal(rebuilt.score(history), model.score(history))


def test_explain_reasons(history: PurchaseHistory) -> None:
    model = create("hybrid", **FAST["hybrid"])
    model.fit(history)
    customer = PurchaseHistory.from_entries(
        np.zeros(3, dtype=np.int64), np.asarray([0, 1, 2]), np.asarray([3.0, 1.0, 1.0]),
        np.ones(3), np.asarray([NOW - 10, NOW - 70, NOW - 40]), (1, N_ITEMS), NOW,
    )
    repeat = model.explain(customer, 0, 0)
    assert repeat == Reason("repeat-purchase", related_item=0, period_days=30.0)  # (60 days) / (3 - 1)
    assert model.explain(customer, 0, 1) == Reason("repeat-purchase", related_item=1, period_days=None)
    scores = model.score(customer)[0]
    scores[[0, 1, 2]] = -np.inf
    best_new = int(np.argmax(scores))
    reason = model.explain(customer, 0, best_new)
    assert reason is not None and reason.kind == "bought-with" and reason.related_item in (0, 1, 2)


def test_explain_never_fails(fitted: Recommender, history: PurchaseHistory) -> None:
    for item in (0, 15, 39):
        reason = fitted.explain(history, 0, item)
        assert reason is None or isinstance(reason, Reason)


def test_explain_many_matches_explain(fitted: Recommender, history: PurchaseHistory) -> None:
    """The service's one-pass reasons are exactly the per-item ones (repeat, bought-with, none)."""
    items = np.arange(N_ITEMS)
    for row in (0, 1, 5):
        customer = history.rows([row])
        assert fitted.explain_many(customer, 0, items) == [fitted.explain(customer, 0, i) for i in range(N_ITEMS)]
    assert fitted.explain_many(history.rows([0]), 0, np.empty(0, dtype=np.int64)) == []


def test_unknown_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown parameter"):
        create("als", factor=10)
    with pytest.raises(ValueError, match="unknown algorithm"):
        create("svd")
    with pytest.raises(ValueError, match="must be one of"):
        create("item-knn", similarity="jaccard")


def test_params_are_converted_from_cli_strings() -> None:
    model = create("als", factors="16", regularization="0.5")
    assert model.params["factors"] == 16 and model.params["regularization"] == 0.5
    assert HYPERPARAMETERS["als"]["half_life"].flag == "--half-life"


def test_ease_refuses_huge_catalogues() -> None:
    wide = PurchaseHistory.empty(2, MAX_ITEMS + 1, NOW)
    with pytest.raises(ValueError, match="item-knn"):
        create("ease").fit(wide)


def test_score_row_matches_score(fitted: Recommender, history: PurchaseHistory) -> None:
    """The service's single-customer path scores and explains exactly like the batch path."""
    items = np.arange(N_ITEMS)
    customers = [history.rows([row]) for row in (0, 1, 5, 17)] + [single([]), single([3, 12], [4.0, 1.0])]
    for customer in customers:
        row = CustomerRow.of(customer, 0)
        expected = fitted.score(customer)[0]
        scores = fitted.score_row(row)
        assert scores.dtype == np.float32 and scores.shape == (N_ITEMS,)
        np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
        assert fitted.explain_row(row, items) == fitted.explain_many(customer, 0, items)
    scores = fitted.score_row(CustomerRow.of(history, 0))
    scores[:] = 0.0  # callers may modify the answer: it must not be a view of the model
    np.testing.assert_allclose(fitted.score_row(CustomerRow.of(history, 0)), fitted.score(history.rows([0]))[0],
                               rtol=1e-5, atol=1e-6)


def test_score_items_is_score_row_and_explain_row_bit_for_bit(fitted: Recommender, history: PurchaseHistory) -> None:
    """Re-ranking a page (``score_items``) scores and explains exactly like the full row, whether the model
    derives its per-customer values now or is given those of an earlier call for another page or those
    computed ahead of any page (``row_constants``); with the first purchase day per item (``history``) and
    without it (``single``, and the sampled customers as a model from before it was kept reads them)."""
    rng = np.random.default_rng(3)
    sampled = [history.rows([row]) for row in range(0, history.shape[0], 7)]
    assert all(customer.first_day is not None for customer in sampled)
    customers = [*sampled, *(replace(customer, first_day=None) for customer in sampled[:4]),
                 single([]), single([3, 12], [4.0, 1.0]), single([5])]
    for customer in customers:
        row = CustomerRow.of(customer, 0)
        assert (row.first_day is None) == (customer.first_day is None)
        own = row.items.astype(np.int64).tolist()
        pages = [rng.choice(N_ITEMS, 12, replace=False), np.asarray([*own[:3], 39, 0, 21], dtype=np.int64),
                 np.arange(N_ITEMS), np.empty(0, dtype=np.int64)]
        remembered = fitted.score_items(row, pages[0]).row_constants
        ahead = fitted.row_constants(row)
        for page in pages:
            expected = fitted.score_row(row)[page]
            reasons = fitted.explain_row(row, page)
            for found in (fitted.score_items(row, page), fitted.score_items(row, page, remembered),
                          fitted.score_items(row, page, ahead)):
                assert found.scores.dtype == np.float32
                assert found.scores.view(np.uint32).tolist() == expected.view(np.uint32).tolist()
                assert found.reasons == reasons


def test_identical_runs_give_identical_models(history: PurchaseHistory) -> None:
    """Every algorithm is deterministic: the same data and params fit the same arrays (bpr included)."""
    for name in ALGORITHMS:
        first, second = create(name, **FAST.get(name, {})), create(name, **FAST.get(name, {}))
        first.fit(history)
        second.fit(history)
        for key, value in first.arrays().items():
            assert np.array_equal(value, second.arrays()[key]), (name, key)


def test_dense_row_sum_is_the_batch_product_bit_for_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The request path's row sum adds the rows in the batch product's order: identical floats, not close ones,
    with scipy's kernel and with the public fallback."""
    import scipy.sparse as sp

    from scoring.models import weighting

    rng = np.random.default_rng(7)
    matrix = rng.standard_normal((300, 257)).astype(np.float32)
    rows = np.sort(rng.choice(300, 41, replace=False))
    values = rng.random(41).astype(np.float32)
    batch = np.asarray(sp.csr_matrix((values, rows, [0, len(rows)]), shape=(1, 300)) @ matrix)[0]
    fast = weighting.dense_row_sum(matrix, rows, values)
    assert fast.dtype == np.float32 and np.array_equal(fast, batch)
    np.testing.assert_allclose(fast, values @ matrix[rows], rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(weighting, "csr_matvecs", None)
    assert np.array_equal(weighting.dense_row_sum(matrix, rows, values), batch)
    assert np.array_equal(weighting.dense_row_sum(np.asfortranarray(matrix), rows, values), batch)
    assert not weighting.dense_row_sum(matrix, rows[:0], values[:0]).any()


def test_discovery_paths_score_and_explain_items_outside_the_history_as_the_full_row(
        fitted: Recommender, history: PurchaseHistory) -> None:
    """A basket's answer (``discovery_row`` / ``explain_discovery``) equals ``score_row`` / ``explain_row`` bit for
    bit on every item outside the history: the only items the caller keeps."""
    customers = [history.rows([row]) for row in range(0, history.shape[0], 9)] + [
        single([3, 12], [4.0, 1.0]), single([5]), single([])]
    for customer in customers:
        row = CustomerRow.of(customer, 0)
        outside = np.setdiff1d(np.arange(N_ITEMS), row.items)
        expected = fitted.score_row(row)[outside]
        found = fitted.discovery_row(row)[outside]
        assert found.dtype == np.float32
        assert found.view(np.uint32).tolist() == expected.view(np.uint32).tolist()
        assert fitted.explain_discovery(row, outside) == fitted.explain_row(row, outside)
