"""Shared parts of the user-kNN next-basket models (TIFU-KNN, UP-CF@r): basket positions, kNN, reasons.

The papers' models read each customer's *sequence* of baskets. A ``PurchaseHistory`` / ``CustomerRow``
keeps, per (customer, item), only the number of distinct orders, the units and the day of the latest
purchase, and the service has nothing else at request time. ``basket_positions`` therefore rebuilds an
approximate basket sequence from those fields, the same way at fit time and at serving time:

* the customer's *visible* baskets are the distinct days of "latest purchase" over their items, ranked
  newest first (position 0 = the newest basket); the latest purchase of an item sits exactly at its
  rank (exact whenever every basket still holds the latest purchase of at least one item);
* the number of baskets is estimated as ``max over items (rank + orders)``: an item bought ``c`` times
  whose last purchase is at position ``p`` needs ``c`` baskets at positions ``>= p`` (a lower bound);
* the ``c - 1`` earlier purchases of an item are spread evenly between its last purchase and the
  customer's first basket (a staple bought since the first visit, as repeat-purchase reasons assumed before
  the first purchase day per item was kept). Exact for one-off purchases and for items bought in every basket.

Neighbours are found among the training customers' vectors, stored as CSR arrays, with an exact,
deterministic top-k (ties go to the lower training row) so that the batch and the single-customer paths
pick the same neighbours.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from scoring.history import CustomerRow, PurchaseHistory
from scoring.models.base import Reason, top_n
from scoring.models.buy_again import repeat_reasons_then
from scoring.models.params import TunableRecommender
from scoring.models.weighting import sparse_arrays, sparse_from_arrays

CELLS_PER_CHUNK = 1 << 22  # query rows x training customers materialised at once (float64: 32 MB)


def basket_positions(
    indptr: np.ndarray, orders: np.ndarray, last_day: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Estimated basket positions of every purchase of every (customer, item) entry of a CSR history.

    Returns ``(entry, position, n_baskets)``: for each estimated purchase the index of its entry (into
    the CSR data arrays) and its basket position (0 = the customer's newest basket), and per row the
    estimated number of baskets (0 for an empty row). See the module docstring for the model.
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    n_rows = len(indptr) - 1
    nnz = int(indptr[-1])
    lengths = np.diff(indptr)
    if nnz == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.zeros(n_rows, np.int64)
    row_of = np.repeat(np.arange(n_rows, dtype=np.int64), lengths)
    days = np.asarray(last_day, dtype=np.float64)
    order = np.lexsort((-days, row_of))  # by row, newest day first
    sorted_days, sorted_rows = days[order], row_of[order]
    new = np.ones(nnz, dtype=bool)
    new[1:] = (sorted_rows[1:] != sorted_rows[:-1]) | (sorted_days[1:] != sorted_days[:-1])
    distinct = np.cumsum(new) - 1
    first = indptr[:-1][lengths > 0]  # sorted position of each non-empty row's first entry
    start = np.zeros(n_rows, dtype=np.int64)
    start[lengths > 0] = distinct[first]
    rank = np.empty(nnz, dtype=np.int64)
    rank[order] = distinct - start[sorted_rows]
    count = np.maximum(np.rint(np.asarray(orders, dtype=np.float64)).astype(np.int64), 1)
    n_baskets = np.zeros(n_rows, dtype=np.int64)
    np.maximum.at(n_baskets, row_of, rank + count)
    # purchase j = 0..count-1 of an entry sits at rank + j * spacing, the oldest at the first basket
    spacing = np.where(count > 1, (n_baskets[row_of] - 1 - rank) / np.maximum(count - 1, 1), 0.0)
    entry = np.repeat(np.arange(nnz, dtype=np.int64), count)
    j = np.arange(len(entry), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
    position = rank[entry] + np.rint(j * spacing[entry]).astype(np.int64)
    return entry, position, n_baskets


def row_of_entries(indptr: np.ndarray) -> np.ndarray:
    """The row index of every CSR entry."""
    indptr = np.asarray(indptr, dtype=np.int64)
    return np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))


def top_k_columns(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the k highest finite scores per row; ties at the k-th value go to the lowest column.

    Exact and order-independent (no reliance on how a partition breaks ties), so one customer scored alone
    gets the same neighbours as inside a batch. Entries at -inf are never selected.
    """
    n_rows, n_cols = scores.shape
    kk = min(k, n_cols)
    if kk <= 0 or n_rows == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    kth = np.partition(scores, n_cols - kk, axis=1)[:, n_cols - kk][:, None]
    greater = scores > kth
    equal = scores == kth
    need = kk - greater.sum(axis=1, keepdims=True)
    take = greater | (equal & (np.cumsum(equal, axis=1) <= need))
    take &= np.isfinite(scores)
    rows, cols = np.nonzero(take)
    return rows.astype(np.int64), cols.astype(np.int64)


def first_true(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the first True of every row that has one."""
    rows = np.flatnonzero(mask.any(axis=1))
    return rows, mask[rows].argmax(axis=1).astype(np.int64)


def csr_from_components(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
                        n_cols: int) -> sp.csr_matrix:
    """A CSR matrix over given (already sorted, unique) components without re-checking them."""
    return sp.csr_matrix((np.asarray(data), np.asarray(indices, dtype=np.int32),
                          np.asarray(indptr, dtype=np.int64)), shape=(len(indptr) - 1, n_cols))


def co_buyer_similar_items(matrix_t: sp.csr_matrix, matrix: sp.csr_matrix, item: int,
                           n: int) -> tuple[np.ndarray, np.ndarray]:
    """Items most often bought by the customers who bought ``item`` (cosine of binary item columns).

    ``matrix`` is customers x items, ``matrix_t`` its transpose (items x customers), both stored by the
    user-kNN models; no item-item matrix is kept.
    """
    if item < 0 or item >= matrix_t.shape[0]:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    buyers = matrix_t.indices[matrix_t.indptr[item]:matrix_t.indptr[item + 1]]
    if not len(buyers):
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    together = np.asarray((matrix[buyers] > 0).sum(axis=0), dtype=np.float64).ravel()
    counts = np.diff(matrix_t.indptr).astype(np.float64)
    cosine = together / np.sqrt(np.maximum(counts * counts[item], 1.0))
    ranked, scores = top_n(cosine.astype(np.float32), n, np.asarray([item]))
    keep = scores > 0
    return ranked[keep], scores[keep]


def similar_customer_reasons(
    own_items: np.ndarray,
    neighbours: np.ndarray,
    weights: np.ndarray,
    contribution: sp.csr_matrix,
    presence: sp.csr_matrix,
    items: np.ndarray,
) -> list[Reason | None]:
    """"Customers who buy like you also buy X" for each of ``items``, or None where no neighbour adds to X.

    ``related_item`` is the customer's own item that the neighbours behind X share most (each neighbour
    counted with its weight times its contribution to X): the link between the customer and those
    neighbours; None for a customer without history (their neighbour part is the average customer).
    """
    items = np.asarray(items, dtype=np.int64)
    if not len(items):
        return []
    if not len(neighbours):
        return [None] * len(items)
    sub = contribution[neighbours]
    parts = sub[:, items].toarray() * np.asarray(weights, dtype=np.float64)[:, None]  # neighbours x items
    adds = parts.sum(axis=0)
    if len(own_items):
        shared = (presence[neighbours][:, own_items].toarray() > 0).astype(np.float64)  # neighbours x own
        links = parts.T @ shared  # items x own items
        # Ties are common (neighbours sharing several of the customer's items): compare at 1e-9 of each
        # row's maximum so BLAS rounding (one item vs many) cannot pick a different related item.
        top = links.max(axis=1, keepdims=True)
        levels = np.rint(np.divide(links, top, out=np.zeros_like(links), where=top > 0) * 1e9)
        best = levels.argmax(axis=1)
        best_value = links[np.arange(len(items)), best]
    else:
        best = np.zeros(len(items), dtype=np.int64)
        best_value = np.zeros(len(items))
    out: list[Reason | None] = []
    for k in range(len(items)):
        if adds[k] <= 0:
            out.append(None)
        elif best_value[k] > 0:
            out.append(Reason("similar-customers", related_item=int(own_items[best[k]])))
        else:
            out.append(Reason("similar-customers"))
    return out


class UserKNNRecommender(TunableRecommender):
    """Own vector (from the served history) blended with neighbours found among the training customers.

    Subclasses define the customer vector (``_own``), the vector neighbours are searched with
    (``_query``), the similarity (``_similarity``, -inf where a training customer may not be a neighbour)
    and the neighbour weights (``_weights``). ``contribution`` (what a neighbour adds to the scores) and
    ``presence`` (its item set) are the fitted training customers x items matrices.

        score = own_weight * own + sum over neighbours (weight * contribution row)

    A customer without history gets ``empty_weight`` x the average training customer.
    """

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.contribution = sp.csr_matrix((0, 0), dtype=np.float32)
        self.presence = sp.csr_matrix((0, 0), dtype=np.float32)
        self._presence_t = sp.csr_matrix((0, 0), dtype=np.float32)
        self._mean = np.zeros(0, dtype=np.float32)

    # -- defined by the models -------------------------------------------------------------------------
    @abstractmethod
    def _own(self, indptr: np.ndarray, indices: np.ndarray, orders: np.ndarray,
             last_day: np.ndarray) -> np.ndarray:
        """The customers' own vectors: one float32 value per history entry."""

    @abstractmethod
    def _query(self, own: sp.csr_matrix) -> sp.csr_matrix:
        """The vectors neighbours are searched with (same sparsity as ``own``)."""

    @abstractmethod
    def _similarity(self, query: sp.csr_matrix, dots: np.ndarray) -> np.ndarray:
        """Dense float64 (rows x training customers), higher = closer, -inf = never a neighbour.

        ``dots`` is ``query @ presence.T`` (float64), computed by the caller."""

    @abstractmethod
    def _weights(self, similarity: np.ndarray, per_row: np.ndarray) -> np.ndarray:
        """Neighbour weights from their similarities and the number of neighbours found for their row."""

    own_weight: float = 1.0
    empty_weight: float = 1.0

    # -- shared machinery ------------------------------------------------------------------------------
    def _prepare(self) -> None:
        """Caches derived from the fitted matrices (never saved: ``from_arrays`` rebuilds them)."""
        self._presence_t = sp.csr_matrix(self.presence.T, dtype=np.float32)
        self._presence_t.sort_indices()
        n = max(self.contribution.shape[0], 1)
        self._mean = (np.asarray(self.contribution.sum(axis=0), dtype=np.float64).ravel() / n).astype(np.float32)

    def _neighbours(self, own: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query row, training row, weight) of every neighbour of every non-empty query row."""
        query = self._query(own)
        dots = np.asarray((sp.csr_matrix(query, dtype=np.float64) @ self._presence_t).toarray())
        similarity = self._similarity(query, dots)
        similarity[np.diff(own.indptr) == 0] = -np.inf  # no history: the average customer instead
        rows, cols = top_k_columns(similarity, int(self.params["neighbours"]))
        per_row = np.bincount(rows, minlength=own.shape[0])
        weights = self._weights(similarity[rows, cols], per_row[rows])
        return rows, cols, weights

    def _scores(self, indptr: np.ndarray, indices: np.ndarray, orders: np.ndarray,
                last_day: np.ndarray) -> np.ndarray:
        n_items = self.contribution.shape[1]
        own = csr_from_components(indptr, indices, self._own(indptr, indices, orders, last_day), n_items)
        n_rows = own.shape[0]
        out = np.empty((n_rows, n_items), dtype=np.float32)
        step = max(1, CELLS_PER_CHUNK // max(self.contribution.shape[0], 1))
        for start in range(0, n_rows, step):
            chunk = own[start:start + step]
            rows, cols, weights = self._neighbours(chunk)
            mixing = sp.csr_matrix((weights, (rows, cols)), shape=(chunk.shape[0], self.contribution.shape[0]))
            out[start:start + step] = (mixing @ self.contribution).toarray()
        empty = np.flatnonzero(np.diff(own.indptr) == 0)
        if len(empty):
            out[empty] = np.float32(self.empty_weight) * self._mean
        out[row_of_entries(own.indptr), own.indices] += np.float32(self.own_weight) * own.data
        return out

    def score(self, history: PurchaseHistory) -> np.ndarray:
        o = history.orders
        return self._scores(o.indptr, o.indices, o.data, history.last_day.data)

    def score_row(self, row: CustomerRow) -> np.ndarray:
        indptr = np.asarray([0, len(row.items)], dtype=np.int64)
        return self._scores(indptr, row.items, row.orders, row.last_day)[0]

    def similar_items(self, item: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        return co_buyer_similar_items(self._presence_t, self.presence, item, n)

    def explain(self, history: PurchaseHistory, row: int, item: int) -> Reason | None:
        return self.explain_many(history, row, np.asarray([item]))[0]

    def explain_many(self, history: PurchaseHistory, row: int, items: np.ndarray) -> list[Reason | None]:
        return self.explain_row(CustomerRow.of(history, row), items)

    def explain_row(self, row: CustomerRow, items: np.ndarray) -> list[Reason | None]:
        def by_neighbours(rest: np.ndarray) -> list[Reason | None]:
            indptr = np.asarray([0, len(row.items)], dtype=np.int64)
            own = csr_from_components(indptr, row.items,
                                      self._own(indptr, row.items, row.orders, row.last_day),
                                      self.contribution.shape[1])
            _, cols, weights = self._neighbours(own)
            return similar_customer_reasons(np.asarray(row.items, dtype=np.int64), cols, weights,
                                            self.contribution, self.presence, rest)

        return repeat_reasons_then(row, items, by_neighbours)

    def _matrix_arrays(self) -> dict[str, np.ndarray]:
        return {**sparse_arrays("contribution", self.contribution), **sparse_arrays("presence", self.presence)}

    def arrays(self) -> dict[str, np.ndarray]:
        return self._matrix_arrays()

    @classmethod
    def from_arrays(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> Self:
        model = cls(**params)
        model.contribution = sparse_from_arrays("contribution", arrays)
        model.presence = sparse_from_arrays("presence", arrays)
        model._prepare()
        return model

    def _set_fitted(self, contribution: sp.csr_matrix, presence: sp.csr_matrix) -> None:
        """Store the fitted matrices exactly as ``arrays()`` ships them (float32 CSR), so a rebuilt model
        scores bit for bit like the fitted one."""
        self.contribution = sparse_from_arrays("contribution", sparse_arrays("contribution", contribution.copy()))
        self.presence = sparse_from_arrays("presence", sparse_arrays("presence", presence.copy()))
        self._prepare()
