"""UP-CF@r (Faggioli, Polato, Aiolli, UMAP 2020): recency-aware user popularity spread by user-based CF.

The paper's user-wise popularity counts an item over the customer's last ``r`` baskets only,

    p_r(u, i) = |{b among the last r baskets of u : i in b}| / min(r, |baskets of u|),

and scores by summing it over similar customers with the asymmetric cosine similarity of their item
sets, sharpened by the locality exponent ``q``:

    sim(u, v) = |I_u & I_v| / (|I_u| ** alpha * |I_v| ** (1 - alpha)),
    score(u, i) = sum over v of sim(u, v) ** q * p_r(v, i)        (v = u included, sim(u, u) = 1).

Adaptation to Tailor (honest differences from the paper):

* The last ``r`` baskets are estimated from the served fields (``user_knn.basket_positions``): an item's
  latest purchase is in the window exactly when its latest-purchase day is among the customer's ``r``
  newest distinct latest-purchase days; its earlier purchases are assumed evenly spread back to the
  first basket, so counts above 1 inside the window are estimates. Baskets whose items were all bought
  again later are invisible, so the window can reach further back than ``r`` real baskets.
* The customer's own term (``v = u``, weight 1) is computed from the served history, so a purchase
  changes the answer without refitting; the other customers are the stored training customers, of whom
  only the ``neighbours`` most similar are summed (the paper sums all users; a large ``neighbours`` is the
  same). A training customer's own stored copy (same item set) is skipped once so it is not counted twice.
* A customer without history gets the average training customer's ``p_r`` (the paper does not score them).
* Defaults chosen on validation splits (docs/QUALITY_TIFU_UPCF.md): r = 50 (on both shops a longer
  window only helped, so the recency window is all but open), alpha = 0.75, q = 5, 300 neighbours.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from scoring.history import PurchaseHistory
from scoring.models.params import AT_LEAST_ONE, UNIT, Param
from scoring.models.user_knn import UserKNNRecommender, basket_positions, row_of_entries


def window_popularity(indptr: np.ndarray, orders: np.ndarray, last_day: np.ndarray, recency: int) -> np.ndarray:
    """p_r of every history entry (float32, same sparsity; 0 for items outside the last r baskets)."""
    entry, position, n_baskets = basket_positions(indptr, orders, last_day)
    nnz = int(np.asarray(indptr)[-1])
    if not len(entry):
        return np.zeros(nnz, dtype=np.float32)
    r = max(int(recency), 1)
    inside = position < r
    counts = np.bincount(entry[inside], minlength=nnz).astype(np.float64)
    window = np.minimum(n_baskets, r)[row_of_entries(indptr)]
    return (counts / np.maximum(window, 1)).astype(np.float32)


class UPCFRecommender(UserKNNRecommender):
    """The customer's recent-basket popularity + similar customers' (asymmetric cosine ** q) popularity."""

    name = "upcf"
    hyperparameters = (
        Param("recency", 50, int, "r: only the last r baskets count in the user popularity", **AT_LEAST_ONE),
        Param("alpha", 0.75, float, "asymmetry of the cosine between customers (0.5 = plain cosine)", **UNIT),
        Param("locality", 5.0, float, "q: exponent sharpening the similarities"),
        Param("neighbours", 300, int, "most similar customers summed", **AT_LEAST_ONE),
    )

    def _own(self, indptr: np.ndarray, indices: np.ndarray, orders: np.ndarray,
             last_day: np.ndarray) -> np.ndarray:
        return window_popularity(indptr, orders, last_day, self.params["recency"])

    def fit(self, history: PurchaseHistory, *, progress: bool = False) -> None:
        o = history.orders
        popularity = sp.csr_matrix((self._own(o.indptr, o.indices, o.data, history.last_day.data), o.indices.copy(),
                                    o.indptr.copy()), shape=history.shape)
        popularity.eliminate_zeros()
        items = sp.csr_matrix((np.ones(o.nnz, dtype=np.float32), o.indices, o.indptr), shape=history.shape)
        self._set_fitted(popularity, items)

    def _prepare(self) -> None:
        super()._prepare()
        self._sizes = np.diff(self.presence.indptr).astype(np.float64)

    def _query(self, own: sp.csr_matrix) -> sp.csr_matrix:
        return sp.csr_matrix((np.ones(own.nnz, dtype=np.float32), own.indices, own.indptr), shape=own.shape)

    def _similarity(self, query: sp.csr_matrix, dots: np.ndarray) -> np.ndarray:
        alpha = float(self.params["alpha"])
        sizes = np.diff(query.indptr).astype(np.float64)[:, None]
        norms = np.power(sizes, alpha) * np.power(self._sizes, 1.0 - alpha)[None, :]
        similarity = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
        copy = (dots == sizes) & (self._sizes[None, :] == sizes)
        rows = np.flatnonzero(copy.any(axis=1))
        similarity[rows, copy[rows].argmax(axis=1)] = 0.0  # skip one copy of the customer
        similarity[similarity <= 0] = -np.inf  # nothing in common: never a neighbour
        return similarity

    def _weights(self, similarity: np.ndarray, per_row: np.ndarray) -> np.ndarray:
        return np.power(similarity, float(self.params["locality"]))

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._sizes = np.zeros(0, dtype=np.float64)
