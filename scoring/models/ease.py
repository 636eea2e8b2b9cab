"""EASE (Steck 2019): a closed-form item-item linear model, the strongest collaborative signal here.

B = I - P / diag(P) with P = (X'X + lambda I)^-1, diagonal forced to zero, so an item is predicted only
from the other items in the basket. One dense inverse of an items x items matrix: seconds for the few
thousand items of a typical shop, impossible for 100k items, hence ``MAX_ITEMS``. Scoring a single history
adds up the rows of its few items.

``head_items`` makes EASE usable on a large catalogue: the closed form is fitted on the items with most
buyers only and each item keeps its ``head_keep`` largest weights, stored sparse (a grocery log of 24k items
measured better with EASE on its 8k-item head than with item-kNN on every item, docs/QUALITY.md); the
items outside the head get no CF score (popularity and the customer's own history still rank them).
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import scipy.linalg.lapack
import scipy.sparse as sp

from scoring.history import CustomerRow, PurchaseHistory
from scoring.models.base import Reason, bought_with_reason
from scoring.models.params import AT_LEAST_ONE, POSITIVE, Param, TunableRecommender
from scoring.models.weighting import (
    Weighting,
    dense_row_sum,
    positive_top_n,
    row_sum,
    sparse_arrays,
    sparse_columns,
    sparse_from_arrays,
)

MAX_ITEMS = 20_000


def ease_weights(weighted: sp.csr_matrix, regularization: float) -> np.ndarray:
    """The EASE item-item weight matrix (float32, zero diagonal) of a customers x items confidence matrix."""
    n_items = weighted.shape[1]
    if n_items > MAX_ITEMS:
        raise ValueError(
            f"EASE needs a dense {n_items} x {n_items} inverse; above {MAX_ITEMS} items use "
            "'item-knn' or the default hybrid (which switches to a sparse neighbour model)"
        )
    gram = (weighted.T @ weighted).toarray().astype(np.float32)
    gram[np.diag_indices(n_items)] += regularization
    # Inverse through the Cholesky factor (potrf + potri): a third of the work of a general inverse, and
    # float32 is accurate enough with lambda on the diagonal.
    potrf, potri = scipy.linalg.lapack.get_lapack_funcs(("potrf", "potri"), (gram,))
    factor, info = potrf(gram, lower=False, overwrite_a=True)
    if info == 0:
        precision, info = potri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise ValueError(f"EASE Gram matrix is not positive definite (LAPACK info {info}); raise lambda")
    precision = np.triu(precision) + np.triu(precision, 1).T
    weights = precision / -np.diag(precision)
    weights[np.diag_indices(n_items)] = 0.0
    return weights.astype(np.float32)


def head_weights(weighted: sp.csr_matrix, regularization: float, head_items: int,
                 keep: int) -> sp.csr_matrix:
    """EASE fitted on the ``head_items`` items with most buyers, each row pruned to its ``keep`` largest
    positive weights, as an items x items CSR matrix over the whole catalogue (zero outside the head)."""
    n_items = weighted.shape[1]
    buyers = np.bincount(weighted.indices, minlength=n_items)
    head = np.sort(np.argsort(-buyers, kind="stable")[:min(head_items, n_items)])
    dense = ease_weights(sp.csr_matrix(weighted[:, head]), regularization)
    keep = min(keep, len(head))
    top = np.argpartition(-dense, keep - 1, axis=1)[:, :keep]
    values = np.take_along_axis(dense, top, axis=1).ravel()
    positive = values > 0
    rows = np.repeat(head, keep)[positive]
    pruned = sp.csr_matrix((values[positive], (rows, head[top.ravel()][positive])),
                           shape=(n_items, n_items), dtype=np.float32)
    pruned.sort_indices()
    return pruned


def contributions(
    weighted_row: sp.csr_matrix, weights: np.ndarray | sp.csr_matrix, item: int
) -> tuple[int, float]:
    """The history item (other than ``item``) adding most to the score of ``item``, and that amount."""
    cols, values = weighted_row.indices, weighted_row.data
    if not len(cols):
        return -1, 0.0
    column = weights[cols, item]
    column = np.asarray(column.toarray() if sp.issparse(column) else column).ravel()
    parts = values * column
    parts[cols == item] = -np.inf
    best = int(np.argmax(parts))
    return int(cols[best]), float(parts[best])


def contributions_row(cols: np.ndarray, values: np.ndarray, weights: np.ndarray | sp.csr_matrix,
                      items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``contributions`` for each of ``items`` from one customer's history items ``cols`` (confidences
    ``values``): the related history item per item (-1 where there is none) and its contribution."""
    items = np.asarray(items, dtype=np.int64)
    if not len(cols) or not len(items):
        return np.full(len(items), -1, dtype=np.int64), np.zeros(len(items), dtype=np.float32)
    return contributions_block(cols, values, weight_block(weights, cols, items), items)


def weight_block(weights: np.ndarray | sp.csr_matrix, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``weights[rows][:, items]`` as a dense array; from a C-ordered dense matrix by one flat ``take``
    (about half the cost of ``np.ix_`` indexing for a customer's ~60 rows x 20 items), from a sparse one by
    picking the rows' entries (``sparse_columns``) instead of scipy's fancy indexing."""
    if sp.issparse(weights):
        if not weights.has_canonical_format:
            return np.asarray(weights[rows][:, items].toarray())
        return sparse_columns(weights, rows, items)[1]
    if not weights.flags.c_contiguous:
        return weights[np.ix_(rows, items)]
    offsets = np.asarray(rows, dtype=np.int64)[:, None] * weights.shape[1] + np.asarray(items, dtype=np.int64)
    return np.take(weights.reshape(-1), offsets)


def weight_columns(weights: np.ndarray | sp.csr_matrix, rows: np.ndarray, items: np.ndarray,
                   values: np.ndarray | None = None) -> tuple[np.ndarray | None, np.ndarray] | None:
    """``weight_block`` and, given ``values``, the scores they give ``items`` through ``weights`` (the rows'
    weighted sum, exactly as ``row_sum`` adds it up over all columns); None for a matrix whose layout has no
    such path (the caller sums the whole row)."""
    if sp.issparse(weights):
        return sparse_columns(weights, rows, items, values) if weights.has_canonical_format else None
    if weights.dtype != np.float32 or not weights.flags.c_contiguous:
        return None
    block = weight_block(weights, rows, items)
    if values is None:
        return None, block
    # the block's columns summed in the same order as the whole row
    return dense_row_sum(block, np.arange(len(rows), dtype=np.int32), values), block


def contributions_block(cols: np.ndarray, values: np.ndarray, block: np.ndarray, items: np.ndarray, *,
                        bought: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``contributions_row`` from the block ``weight_block(weights, cols, items)`` already gathered;
    ``bought=False`` says that no item of ``items`` is among ``cols`` (nothing to leave out)."""
    parts = values[:, None] * block
    if bought:
        parts[cols[:, None] == items[None, :]] = -np.inf
    best = parts.argmax(axis=0)
    return cols[best].astype(np.int64), parts[best, np.arange(len(items))]


def bought_with(related: np.ndarray, parts: np.ndarray) -> list[Reason | None]:
    """"Bought with" reasons from ``contributions_row`` (None where no history item adds to the score)."""
    return [bought_with_reason(r) if r >= 0 and p > 0 else None
            for r, p in zip(related.tolist(), parts.tolist(), strict=True)]


class EASERecommender(TunableRecommender):
    """Embarrassingly shallow autoencoder on time-decayed purchases (binary by default: measured best)."""

    name = "ease"
    hyperparameters = (
        Param("regularization", 200.0, float, "L2 penalty lambda of the closed form", **POSITIVE),
        Param("weighting", "binary", str, "input confidence", ("binary", "orders", "log", "bm25")),
        Param("half_life", 60.0, float, "time decay of the input in days (0 = none)"),
        Param("head_items", 0, int, "fit on the N items with most buyers, pruned and sparse (0 = all, dense)"),
        Param("head_keep", 200, int, "weights kept per item when head_items is set", **AT_LEAST_ONE),
    )

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.weighting = Weighting(self.params["weighting"], self.params["half_life"])
        self.weights: np.ndarray | sp.csr_matrix = np.zeros((0, 0), dtype=np.float32)

    def fit(self, history: PurchaseHistory, *, progress: bool = False) -> None:
        self.weighting = Weighting.fit(history, self.params["weighting"], self.params["half_life"])
        weighted = self.weighting.apply(history)
        head = int(self.params["head_items"])
        if head > 0 and weighted.shape[1] > head:
            self.weights = head_weights(weighted, self.params["regularization"], head, self.params["head_keep"])
        else:
            self.weights = ease_weights(weighted, self.params["regularization"])

    def score(self, history: PurchaseHistory) -> np.ndarray:
        scores = self.weighting.apply(history) @ self.weights
        return np.asarray(scores.toarray() if sp.issparse(scores) else scores, dtype=np.float32)

    def similar_items(self, item: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        row = self.weights[item]
        return positive_top_n(row.toarray().ravel() if sp.issparse(row) else row, n, item)

    def arrays(self) -> dict[str, np.ndarray]:
        if sp.issparse(self.weights):
            return {**sparse_arrays("weights", self.weights), **self.weighting.arrays()}
        return {"weights": self.weights, **self.weighting.arrays()}

    @classmethod
    def from_arrays(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> Self:
        model = cls(**params)
        model.weights = (sparse_from_arrays("weights", arrays) if "weights_data" in arrays
                         else np.asarray(arrays["weights"], dtype=np.float32))
        model.weighting = Weighting.from_arrays(model.params["weighting"], model.params["half_life"], arrays)
        return model

    def explain(self, history: PurchaseHistory, row: int, item: int) -> Reason | None:
        related, part = contributions(self.weighting.apply(history.rows([row])), self.weights, item)
        return bought_with_reason(related) if related >= 0 and part > 0 else None

    def explain_many(self, history: PurchaseHistory, row: int, items: np.ndarray) -> list[Reason | None]:
        return self.explain_row(CustomerRow.of(history, row), items)

    def score_row(self, row: CustomerRow) -> np.ndarray:
        """The weighted sum of the rows of the customer's items, added up in place (``row_sum``)."""
        if not len(row.items):
            return np.zeros(self.weights.shape[1], dtype=np.float32)
        return row_sum(self.weights, row.items, self.weighting.apply_row(row))

    @property
    def row_matrix(self) -> np.ndarray | sp.csr_matrix:
        """The matrix whose rows, weighted by the customer's confidences, sum to the score (``score_items``)."""
        return self.weights

    def explain_row(self, row: CustomerRow, items: np.ndarray) -> list[Reason | None]:
        return bought_with(*contributions_row(row.items, self.weighting.apply_row(row), self.weights, items))
