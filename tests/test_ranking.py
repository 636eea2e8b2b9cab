"""The serving top-k (``top_indices`` / ``rank_scores``) against a plain full sort."""

from __future__ import annotations

import numpy as np
import pytest

from service.domain.ranking import Filters, rank_scores, top_indices


def reference(row: np.ndarray, k: int) -> np.ndarray:
    """The k best finite scores, best first, by a stable full sort."""
    finite = np.flatnonzero(np.isfinite(row))
    return finite[np.argsort(-row[finite], kind="stable")][:k]


@pytest.mark.parametrize("seed", range(40))
def test_top_indices_is_exact(seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = int(rng.integers(1, 5000))
    row = rng.random(size).astype(np.float32)
    if seed % 4 == 1:
        row = np.round(row * 5).astype(np.float32)  # heavy ties
    if seed % 4 == 2:
        row[rng.random(size) < 0.9] = -np.inf  # most items filtered out
    if seed % 4 == 3:
        row[rng.random(size) < 0.05] = np.nan
    for k in (1, 10, 100):
        got = top_indices(row, min(k, size))
        got = got[np.isfinite(row[got])]
        want = reference(row, k)
        np.testing.assert_array_equal(row[got], row[want])
        if seed % 4 == 0:  # no ties: the same items too
            np.testing.assert_array_equal(got, want)


def test_rank_scores_masks_and_orders() -> None:
    scores = np.asarray([0.5, 0.9, 0.1, 0.7, np.nan, 0.8], dtype=np.float32)
    codes = np.asarray([0, 1, 0, 1, 0, 0])
    idx, values = rank_scores(scores.copy(), 3, Filters(np.asarray([1])), codes)
    assert idx.tolist() == [5, 3, 0] and values.tolist() == pytest.approx([0.8, 0.7, 0.5])
    idx, _ = rank_scores(scores.copy(), 10, Filters(category=1), codes)
    assert idx.tolist() == [1, 3]


def test_similar_customers_reason_names_the_shared_item() -> None:
    from scoring.models.base import Reason
    from service.domain.ranking import reason_text

    ids = np.asarray(["A", "B"])
    assert reason_text(Reason("similar-customers", 1), ids, lambda _: "") == (
        "customers who buy B like you also buy this")
    assert reason_text(Reason("similar-customers"), ids, lambda _: "") == "customers who buy like you also buy this"
