"""Purchase log -> ``PurchaseHistory``: one vectorized pass, no Python loop over rows.

Every (customer, item) pair becomes one entry carrying the number of distinct orders that contained the
item, the units bought and the days of the latest and of the first purchase. Customers and items get sorted
indices so the same log always yields the same matrix, and ``history_for`` re-uses an existing index (a fitted
model's), which is how the evaluator builds the held-out truth and how the service aligns a live history.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import scipy.sparse as sp

from scoring.history import PurchaseHistory, to_day

REQUIRED_COLUMNS = ("customer_id", "item_id", "timestamp", "quantity", "order_id")


def _now_day(interactions: pd.DataFrame, now: datetime | pd.Timestamp | None) -> float:
    if now is not None:
        return float(to_day(pd.DatetimeIndex([pd.Timestamp(now)]))[0])
    if len(interactions) == 0:
        return 0.0
    return float(to_day(pd.DatetimeIndex([interactions["timestamp"].max()]))[0])


def _codes(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Sorted dense codes of an id column; categorical columns skip hashing the strings again."""
    codes, uniques = pd.factorize(values, sort=True)
    return codes, np.asarray(uniques, dtype=str)


def _aggregate(
    rows: np.ndarray,
    cols: np.ndarray,
    interactions: pd.DataFrame,
    shape: tuple[int, int],
    now_day: float,
) -> PurchaseHistory:
    """Collapse row-level purchases (already mapped to matrix coordinates) to one entry per pair.

    One sort by (pair, order) gives everything: pair boundaries for the sums and maxima, and order
    boundaries inside each pair for the distinct-order count.
    """
    if len(rows) == 0:
        return PurchaseHistory.empty(shape[0], shape[1], now_day)
    order_code, order_key = pd.factorize(interactions["order_id"])
    n_orders = max(len(order_key), 1)
    pair = rows.astype(np.int64) * shape[1] + cols.astype(np.int64)
    if shape[0] * shape[1] * n_orders < 2**62:
        perm = np.argsort(pair * n_orders + order_code)
    else:
        perm = np.lexsort((order_code, pair))
    pair = pair[perm]
    order_code = order_code[perm]

    new_pair = np.empty(len(pair), dtype=bool)
    new_pair[0] = True
    np.not_equal(pair[1:], pair[:-1], out=new_pair[1:])
    new_order = new_pair.copy()
    new_order[1:] |= order_code[1:] != order_code[:-1]
    starts = np.flatnonzero(new_pair)

    orders = np.add.reduceat(new_order.astype(np.int64), starts)
    quantity = np.add.reduceat(interactions["quantity"].to_numpy(dtype=np.float64)[perm], starts)
    days = to_day(interactions["timestamp"])[perm]
    last_day = np.maximum.reduceat(days, starts)
    first_day = np.minimum.reduceat(days, starts)

    keys = pair[starts]
    entry_rows, entry_cols = keys // shape[1], (keys % shape[1]).astype(np.int32)
    indptr = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(entry_rows, minlength=shape[0]), out=indptr[1:])

    def csr(values: np.ndarray, dtype: type) -> sp.csr_matrix:
        m = sp.csr_matrix((values.astype(dtype), entry_cols.copy(), indptr.copy()), shape=shape)
        m.has_sorted_indices = True
        return m

    return PurchaseHistory(csr(orders, np.float32), csr(quantity, np.float32), csr(last_day, np.float64),
                           now_day, csr(first_day, np.float64))


def build_history(
    interactions: pd.DataFrame, now: datetime | pd.Timestamp | None = None
) -> tuple[PurchaseHistory, np.ndarray, np.ndarray]:
    """Histories of every customer in the log, plus the (sorted) customer and item ids of rows / columns.

    ``now`` is the reference time of recency (defaults to the latest timestamp in the log).
    """
    _check_columns(interactions)
    rows, customer_ids = _codes(interactions["customer_id"])
    cols, item_ids = _codes(interactions["item_id"])
    shape = (len(customer_ids), len(item_ids))
    history = _aggregate(rows, cols, interactions, shape, _now_day(interactions, now))
    return history, customer_ids, item_ids


def history_for(
    interactions: pd.DataFrame,
    customer_ids: np.ndarray,
    item_ids: np.ndarray,
    now: datetime | pd.Timestamp | None = None,
) -> PurchaseHistory:
    """Histories aligned with an existing index: row i is ``customer_ids[i]``, column j is ``item_ids[j]``.

    Purchases of customers or items outside the index are dropped (a model cannot score unknown items).
    """
    _check_columns(interactions)
    rows = pd.Index(np.asarray(customer_ids, dtype=str)).get_indexer(interactions["customer_id"].astype(str))
    cols = pd.Index(np.asarray(item_ids, dtype=str)).get_indexer(interactions["item_id"].astype(str))
    known = (rows >= 0) & (cols >= 0)
    shape = (len(customer_ids), len(item_ids))
    now_day = _now_day(interactions, now)
    return _aggregate(rows[known], cols[known], interactions.loc[known], shape, now_day)


def _check_columns(interactions: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in interactions.columns]
    if missing:
        raise ValueError(f"purchase log lacks column(s) {', '.join(missing)}")
