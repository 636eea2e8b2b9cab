"""Shared building blocks: confidence weighting, time decay, per-customer normalization, sparse <-> arrays.

A purchase history carries order counts, units and the day of the latest purchase; models turn that into
one confidence per (customer, item). How much a repeat purchase counts (``weighting``) and how fast an
old purchase fades (``half_life`` in days) are model parameters, chosen by measurement (docs/QUALITY.md).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

try:  # scipy's compiled CSR x dense kernel, the one behind ``csr_matrix @ ndarray`` (stable since scipy 0.x)
    from scipy.sparse._sparsetools import csr_matvecs
except ImportError:  # pragma: no cover - a scipy that moved it: the public product below does the same
    csr_matvecs = None

from scoring.history import CustomerRow, PurchaseHistory
from scoring.models.base import top_n

WEIGHTINGS = ("binary", "orders", "log", "bm25")
BM25_K1 = 1.2
BM25_B = 0.75


def decay(last_day: np.ndarray, now_day: float, half_life: float | None) -> np.ndarray:
    """Per-entry recency factor 0.5 ** (days since the latest purchase / half_life); 1 when disabled."""
    if not half_life or half_life <= 0:
        return np.ones(len(last_day), dtype=np.float32)
    age = np.maximum(now_day - np.asarray(last_day, dtype=np.float64), 0.0)
    return np.exp2(-age / float(half_life)).astype(np.float32)


@dataclass(frozen=True)
class Weighting:
    """How purchases become confidences: weighted order count times time decay.

    ``binary`` ignores repeats, ``orders`` counts them linearly, ``log`` uses 1 + log(orders) (a repeat
    counts, but ten orders are not ten times the evidence), ``bm25`` saturates repeats, normalizes by
    basket size and down-weights items everybody buys. The bm25 statistics are learned once at fit time
    (``fit``) and shipped in ``arrays()`` so a served history is weighted exactly like the training data.
    """

    scheme: str = "log"
    half_life: float | None = None
    idf: np.ndarray | None = None
    avg_length: float = 1.0

    @classmethod
    def fit(cls, history: PurchaseHistory, scheme: str = "log", half_life: float | None = None) -> Weighting:
        if scheme not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {scheme!r}; expected one of {', '.join(WEIGHTINGS)}")
        if scheme != "bm25":
            return cls(scheme, half_life)
        buyers = np.bincount(history.orders.indices, minlength=history.shape[1]).astype(np.float64)
        n = max(history.shape[0], 1)
        idf = np.log1p((n - buyers + 0.5) / (buyers + 0.5)).astype(np.float32)
        lengths = np.diff(history.orders.indptr)
        avg_length = float(lengths[lengths > 0].mean()) if lengths.any() else 1.0
        return cls(scheme, half_life, idf, avg_length)

    def confidences(self, orders: np.ndarray, last_day: np.ndarray, now_day: float, items: np.ndarray,
                    lengths: np.ndarray | int) -> np.ndarray:
        """float32 confidences of purchase entries; ``lengths`` is each entry's basket size (bm25 only)."""
        orders = np.asarray(orders, dtype=np.float32)
        if self.scheme == "binary":
            values = np.ones_like(orders)
        elif self.scheme == "orders":
            values = orders
        elif self.scheme == "log":
            values = 1.0 + np.log(np.maximum(orders, 1.0))
        else:
            norm = (1.0 - BM25_B) + BM25_B * np.asarray(lengths, dtype=np.float64) / self.avg_length
            idf = self.idf[items] if self.idf is not None else np.float32(1.0)
            values = orders * (BM25_K1 + 1.0) / (BM25_K1 * norm + orders) * idf
        return (values * decay(last_day, now_day, self.half_life)).astype(np.float32, copy=False)

    def apply(self, history: PurchaseHistory) -> sp.csr_matrix:
        """One float32 confidence per purchased (customer, item), same sparsity as the history."""
        lengths: np.ndarray | int = 0
        if self.scheme == "bm25":
            per_row = np.diff(history.orders.indptr)
            lengths = np.repeat(per_row, per_row)
        values = self.confidences(history.orders.data, history.last_day.data, history.now_day,
                                  history.orders.indices, lengths)
        # A shallow copy sharing the (already valid) index arrays: the csr_matrix constructor would check
        # them again, which costs more than the weighting itself.
        weighted = copy.copy(history.orders)
        weighted.data = values
        return weighted

    def apply_row(self, row: CustomerRow) -> np.ndarray:
        """``apply`` for one customer: a confidence per item of ``row.items``."""
        return self.confidences(row.orders, row.last_day, row.now_day, row.items, len(row.items))

    def arrays(self) -> dict[str, np.ndarray]:
        if self.idf is None:
            return {}
        return {"weighting_idf": self.idf, "weighting_avg_length": np.asarray([self.avg_length])}

    @classmethod
    def from_arrays(cls, scheme: str, half_life: float | None, arrays: dict[str, np.ndarray]) -> Weighting:
        if "weighting_idf" not in arrays:
            return cls(scheme, half_life)
        return cls(scheme, half_life, arrays["weighting_idf"], float(arrays["weighting_avg_length"][0]))


def minmax_rows(scores: np.ndarray) -> np.ndarray:
    """Scale every row to [0, 1] in place (constant rows become 0) so blends weigh customers alike."""
    low = scores.min(axis=1, keepdims=True)
    high = scores.max(axis=1, keepdims=True)
    span = high - low
    span[span <= 0] = np.inf
    scores -= low
    scores /= span
    return scores


def minmax_row(scores: np.ndarray) -> np.ndarray:
    """``minmax_rows`` of one 1-D row, in place: the same float32 arithmetic without the 2-D bookkeeping."""
    low = scores.min()
    span = scores.max() - low
    scores -= low
    if span > 0:
        scores /= span
    else:
        scores.fill(0.0)
    return scores


def _row_entries(matrix: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``matrix.data`` of the entries of ``rows``, row after row, and each row's entry count."""
    starts, ends = matrix.indptr[rows], matrix.indptr[np.asarray(rows, dtype=np.int64) + 1]
    lengths = ends - starts
    total = int(lengths.sum())
    return np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(total), lengths


def sparse_row_sum(matrix: sp.csr_matrix, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``weights @ matrix[rows]`` as a dense float32 row, without building scipy matrices (request path)."""
    offsets, lengths = _row_entries(matrix, rows)
    if not len(offsets):
        return np.zeros(matrix.shape[1], dtype=np.float32)
    summed = np.bincount(matrix.indices[offsets], weights=matrix.data[offsets] * np.repeat(weights, lengths),
                         minlength=matrix.shape[1])
    return summed.astype(np.float32)


def sparse_columns(matrix: sp.csr_matrix, rows: np.ndarray, items: np.ndarray,
                   weights: np.ndarray | None = None) -> tuple[np.ndarray | None, np.ndarray]:
    """The dense block ``matrix[rows][:, items]`` from the entries of ``rows`` alone, and with ``weights``
    also ``sparse_row_sum(matrix, rows, weights)[items]``: the same float64 terms added in the same order, so
    equal bit for bit. ``matrix`` must be canonical (sorted, no repeated entries), as scipy leaves it."""
    items = np.asarray(items, dtype=np.int64)
    offsets, lengths = _row_entries(matrix, rows)
    if not len(offsets) or not len(items):
        sums = None if weights is None else np.zeros(len(items), dtype=np.float32)
        return sums, np.zeros((len(lengths), len(items)), dtype=matrix.data.dtype)
    wanted, where = np.unique(items, return_inverse=True)
    columns = matrix.indices[offsets]
    at = np.minimum(np.searchsorted(wanted, columns), len(wanted) - 1)
    hit = wanted[at] == columns
    data = matrix.data[offsets]
    found = np.zeros((len(lengths), len(wanted)), dtype=matrix.data.dtype)
    found[np.repeat(np.arange(len(lengths)), lengths)[hit], at[hit]] = data[hit]
    if weights is None:
        return None, found[:, where]
    sums = np.bincount(at[hit], weights=(data * np.repeat(weights, lengths))[hit], minlength=len(wanted))
    return sums.astype(np.float32)[where], found[:, where]


def row_sum(matrix: np.ndarray | sp.csr_matrix, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``weights @ matrix[rows]`` as a fresh float32 row: ``sparse_row_sum`` or ``dense_row_sum``."""
    if sp.issparse(matrix):
        return sparse_row_sum(matrix, rows, weights)
    return dense_row_sum(matrix, rows, weights)


def dense_row_sum(matrix: np.ndarray, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``weights @ matrix[rows]`` as a fresh float32 row, the rows read in place.

    numpy's form gathers the rows into a copy before BLAS multiplies it (61 rows of the 53 MB EASE matrix:
    900 KB copied per request); scipy's kernel for ``csr_matrix @ ndarray`` adds the rows up where they lie,
    about twice as fast, one row after the other: the order the batch ``score`` (a sparse x dense product)
    uses, so the single-customer and the batch scores are bit-identical."""
    n_rows, n_cols = matrix.shape
    rows = np.asarray(rows, dtype=np.int32)
    weights = np.asarray(weights, dtype=np.float32)
    indptr = np.asarray([0, len(rows)], dtype=np.int32)  # the weights as one CSR row over the matrix's rows
    if csr_matvecs is None or matrix.dtype != np.float32 or not matrix.flags.c_contiguous:
        return np.asarray(sp.csr_matrix((weights, rows, indptr), shape=(1, n_rows)) @ matrix, dtype=np.float32).ravel()
    out = np.zeros(n_cols, dtype=np.float32)
    csr_matvecs(1, n_rows, n_cols, indptr, rows, weights, matrix.ravel(), out)
    return out


def sparse_arrays(prefix: str, matrix: sp.csr_matrix) -> dict[str, np.ndarray]:
    """A CSR matrix as plain arrays (``PREFIX_data`` / ``_indices`` / ``_indptr`` / ``_shape``)."""
    matrix = sp.csr_matrix(matrix)
    return {
        f"{prefix}_data": np.asarray(matrix.data, dtype=np.float32),
        f"{prefix}_indices": np.asarray(matrix.indices, dtype=np.int32),
        f"{prefix}_indptr": np.asarray(matrix.indptr, dtype=np.int64),
        f"{prefix}_shape": np.asarray(matrix.shape, dtype=np.int64),
    }


def sparse_from_arrays(prefix: str, arrays: dict[str, np.ndarray]) -> sp.csr_matrix:
    shape = tuple(int(v) for v in arrays[f"{prefix}_shape"])
    return sp.csr_matrix(
        (arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"], arrays[f"{prefix}_indptr"]), shape=shape
    )


def positive_top_n(row: np.ndarray, n: int, item: int) -> tuple[np.ndarray, np.ndarray]:
    """The n best positively related items of one similarity row, never ``item`` itself."""
    ranked, scores = top_n(row, n, np.asarray([item]))
    keep = scores > 0
    return ranked[keep], scores[keep]
