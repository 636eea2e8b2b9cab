"""Item-based nearest neighbours (implicit's Cosine / BM25 recommenders): sparse, scales to any catalogue.

Each item keeps only its ``neighbours`` most similar items, so the model is a sparse items x items matrix:
cheap to fit on 100k items, cheap to store in Redis and a single history is scored by adding up a few
sparse rows. It is the collaborative part of the hybrid when the catalogue is too large for EASE.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import scipy.sparse as sp
from implicit.nearest_neighbours import ItemItemRecommender, bm25_weight, normalize

from scoring.history import CustomerRow, PurchaseHistory
from scoring.models.base import Reason, bought_with_reason
from scoring.models.buy_again import repeat_reason, repeat_reasons_then
from scoring.models.ease import bought_with, contributions, contributions_row
from scoring.models.params import AT_LEAST_ONE, Param, TunableRecommender
from scoring.models.weighting import (
    BM25_B,
    BM25_K1,
    Weighting,
    positive_top_n,
    sparse_arrays,
    sparse_from_arrays,
    sparse_row_sum,
)
from scoring.threads import limit_blas_threads


def knn_similarity(
    counts: sp.csr_matrix, similarity: str, neighbours: int, *, progress: bool = False
) -> sp.csr_matrix:
    """Items x items similarity keeping the top ``neighbours`` per item (row i = neighbours of item i)."""
    items = sp.csr_matrix(counts, dtype=np.float64).T
    # The weighting of implicit's BM25Recommender / CosineRecommender, handed over as CSR (they pass COO).
    if similarity == "bm25":
        weighted = bm25_weight(items, K1=BM25_K1, B=BM25_B)
    elif similarity == "cosine":
        weighted = normalize(items)
    else:
        raise ValueError(f"unknown similarity {similarity!r}; expected cosine or bm25")
    model = ItemItemRecommender(K=neighbours)
    with limit_blas_threads():
        model.fit(sp.csr_matrix(weighted.T, dtype=np.float64), show_progress=progress)
    matrix = sp.csr_matrix(model.similarity, dtype=np.float32)
    matrix.sort_indices()
    return matrix


class ItemKNNRecommender(TunableRecommender):
    """Sum of the neighbour lists of the items a customer bought, weighted by their confidence."""

    name = "item-knn"
    hyperparameters = (
        Param("similarity", "bm25", str, "item-item similarity", ("cosine", "bm25")),
        Param("neighbours", 200, int, "neighbours kept per item", **AT_LEAST_ONE),
        Param("weighting", "log", str, "confidence of a purchase", ("binary", "orders", "log", "bm25")),
        Param("half_life", 60.0, float, "time decay of purchases in days (0 = none)"),
    )

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.weighting = Weighting(self.params["weighting"], self.params["half_life"])
        self.similarity = sp.csr_matrix((0, 0), dtype=np.float32)

    def fit(self, history: PurchaseHistory, *, progress: bool = False) -> None:
        self.weighting = Weighting.fit(history, self.params["weighting"], self.params["half_life"])
        self.similarity = knn_similarity(
            self.weighting.apply(history), self.params["similarity"], self.params["neighbours"],
            progress=progress,
        )

    def score(self, history: PurchaseHistory) -> np.ndarray:
        return np.asarray((self.weighting.apply(history) @ self.similarity).toarray(), dtype=np.float32)

    def similar_items(self, item: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        return positive_top_n(self.similarity[item].toarray().ravel(), n, item)

    def arrays(self) -> dict[str, np.ndarray]:
        return {**sparse_arrays("similarity", self.similarity), **self.weighting.arrays()}

    @classmethod
    def from_arrays(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> Self:
        model = cls(**params)
        model.similarity = sparse_from_arrays("similarity", arrays)
        model.weighting = Weighting.from_arrays(model.params["weighting"], model.params["half_life"], arrays)
        return model

    def explain(self, history: PurchaseHistory, row: int, item: int) -> Reason | None:
        repeat = repeat_reason(history, row, item)
        if repeat is not None:
            return repeat
        related, part = contributions(self.weighting.apply(history.rows([row])), self.similarity, item)
        return bought_with_reason(related) if related >= 0 and part > 0 else None

    def explain_many(self, history: PurchaseHistory, row: int, items: np.ndarray) -> list[Reason | None]:
        return self.explain_row(CustomerRow.of(history, row), items)

    def score_row(self, row: CustomerRow) -> np.ndarray:
        return sparse_row_sum(self.similarity, row.items, self.weighting.apply_row(row))

    @property
    def row_matrix(self) -> sp.csr_matrix:
        """The matrix whose rows, weighted by the customer's confidences, sum to the score (``score_items``)."""
        return self.similarity

    def explain_row(self, row: CustomerRow, items: np.ndarray) -> list[Reason | None]:
        return repeat_reasons_then(row, items, lambda rest: bought_with(*contributions_row(
            row.items, self.weighting.apply_row(row), self.similarity, rest)))
