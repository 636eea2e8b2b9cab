"""The purchase-history matrices every model, the evaluator, the batch export and the service share.

A customer's history is kept as sparse matrices with identical sparsity (customer x item): the number of
distinct orders containing the item, the units bought, the day of the latest purchase and the day of the first
one. Frequency and recency are what re-buying depends on, so they travel with the history instead of being
collapsed into one confidence number too early; the first day dates a re-order interval from when the
customer took the item up (audiences, repeat-purchase reasons), and is None in histories read from models
written before it was kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

SECONDS_PER_DAY = 86_400.0


def to_day(ts: pd.Series | pd.DatetimeIndex | np.ndarray) -> np.ndarray:
    """Datetimes -> float days since the Unix epoch (the time unit of every history)."""
    values = pd.to_datetime(ts).to_numpy(dtype="datetime64[s]").astype(np.int64)
    return (values / SECONDS_PER_DAY).astype(np.float64)


@dataclass(frozen=True)
class PurchaseHistory:
    """Per-customer purchases aligned with a model's item index (rows = customers, cols = items)."""

    orders: sp.csr_matrix
    quantity: sp.csr_matrix
    last_day: sp.csr_matrix
    now_day: float
    # float64: day of the first purchase, same sparsity as ``orders`` (None: not kept, older models)
    first_day: sp.csr_matrix | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.orders.shape

    def rows(self, index: np.ndarray | slice) -> PurchaseHistory:
        """The histories of a subset of customers (same item index, same reference time)."""
        first = self.first_day[index] if self.first_day is not None else None
        return PurchaseHistory(self.orders[index], self.quantity[index], self.last_day[index], self.now_day, first)

    def items_of(self, row: int) -> np.ndarray:
        """Item indices a customer has bought."""
        start, end = self.orders.indptr[row], self.orders.indptr[row + 1]
        return self.orders.indices[start:end]

    @classmethod
    def from_entries(
        cls,
        rows: np.ndarray,
        cols: np.ndarray,
        orders: np.ndarray,
        quantity: np.ndarray,
        last_day: np.ndarray,
        shape: tuple[int, int],
        now_day: float,
        first_day: np.ndarray | None = None,
    ) -> PurchaseHistory:
        """Build from one entry per (customer, item) pair; pairs must be unique."""
        def mat(values: np.ndarray) -> sp.csr_matrix:
            m = sp.csr_matrix((values.astype(np.float32), (rows, cols)), shape=shape)
            m.sort_indices()
            return m

        first = mat(np.asarray(first_day)) if first_day is not None else None
        return cls(mat(orders), mat(quantity), mat(last_day.astype(np.float64)), float(now_day), first)

    @classmethod
    def empty(cls, n_rows: int, n_items: int, now_day: float) -> PurchaseHistory:
        z = sp.csr_matrix((n_rows, n_items), dtype=np.float32)
        return cls(z, z.copy(), z.copy(), float(now_day), z.copy())


@dataclass(frozen=True)
class CustomerRow:
    """One customer's history as plain arrays over sorted, unique item indices.

    The service scores one customer per request; three 1 x n_items scipy matrices cost more to build than
    the scoring itself, so models score this form directly (``Recommender.score_row``) and the batch form
    (``PurchaseHistory``) stays for training, evaluation and export.
    """

    items: np.ndarray  # int32, sorted, unique
    orders: np.ndarray  # float32: distinct orders containing the item
    quantity: np.ndarray  # float32: units
    last_day: np.ndarray  # float64: day of the latest purchase
    now_day: float
    n_items: int
    # float64: day of the first purchase of each item, which dates its repeat-purchase period; None where it is
    # unknown (a model or a published record from before it was kept), for the whole row
    first_day: np.ndarray | None = None

    @classmethod
    def of(cls, history: PurchaseHistory, row: int) -> CustomerRow:
        """Row ``row`` of a batch history (views of its arrays, no copy)."""
        start, end = history.orders.indptr[row], history.orders.indptr[row + 1]
        first = history.first_day.data[start:end] if history.first_day is not None else None
        return cls(history.orders.indices[start:end], history.orders.data[start:end],
                   history.quantity.data[start:end], history.last_day.data[start:end], history.now_day,
                   history.shape[1], first)

    def as_history(self) -> PurchaseHistory:
        """The 1 x n_items batch form (for models without a single-row fast path)."""
        indptr = np.asarray([0, len(self.items)], dtype=np.int64)
        shape = (1, self.n_items)

        def mat(values: np.ndarray, dtype: type) -> sp.csr_matrix:
            return sp.csr_matrix((np.asarray(values, dtype=dtype), np.asarray(self.items, dtype=np.int32), indptr),
                                 shape=shape)

        first = mat(self.first_day, np.float64) if self.first_day is not None else None
        return PurchaseHistory(mat(self.orders, np.float32), mat(self.quantity, np.float32),
                               mat(self.last_day, np.float64), float(self.now_day), first)
