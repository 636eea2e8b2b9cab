"""Every ranking of one score row picks the same items in the same order: best first, equal scores by index,
the lowest indices winning the places at the cut when more items tie with the k-th best than fit. The batch
export (``training.evaluate.top_k``) and the API (``service.domain.ranking.top_indices``,
``scoring.models.base.top_n``) then answer alike, ties included."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from scoring.models.base import top_n
from service.domain.ranking import top_indices
from training.evaluate import BLOCK, top_k


def reference(row: np.ndarray, k: int) -> np.ndarray:
    """Sort by score (descending), then by index: the rule, written the slow way."""
    return np.lexsort((np.arange(len(row)), -row))[:k]


#: Few distinct values, so that ties are the rule rather than the exception; -inf as a masked item.
VALUES = st.sampled_from([0.0, 0.0, 0.5, 1.0, 2.0, -np.inf])


@settings(max_examples=300, deadline=None)
@given(matrix=st.integers(1, 6).flatmap(lambda rows: st.integers(1, 80).flatmap(
    lambda cols: arrays(np.float32, (rows, cols), elements=VALUES))), k=st.integers(1, 25))
def test_every_ranking_breaks_ties_by_index(matrix: np.ndarray, k: int) -> None:
    batch = top_k(matrix, k)
    for r, row in enumerate(matrix):
        expected = reference(row, k)
        assert batch[r].tolist() == expected.tolist()
        assert top_indices(row.copy(), min(k, len(row))).tolist() == expected.tolist()
        finite = int(np.isfinite(row).sum())
        assert top_n(row, k)[0].tolist() == expected[:min(k, finite)].tolist()


def test_wide_rows_narrowed_by_blocks_keep_the_rule() -> None:
    """Catalogues wide enough for ``top_k`` to search the best blocks only: ties at the cut still go to the
    lowest indices, including ties that sit in blocks the narrowing left out."""
    rng = np.random.default_rng(7)
    k = 10
    matrix = rng.integers(0, 4, size=(40, 8 * k * BLOCK + 37)).astype(np.float32)
    matrix[:20, :] = np.minimum(matrix[:20, :], 1.0)  # half the rows: thousands of items tie with the 10th best
    matrix[5, ::3] = -np.inf
    batch = top_k(matrix, k)
    for r, row in enumerate(matrix):
        assert batch[r].tolist() == reference(row, k).tolist(), r
