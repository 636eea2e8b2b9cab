"""Audiences over a population that moved on since the model's data: the customers who bought since, merged in.

Their purchases arrive as events after the version was published (the API reads them from Redis, ``tailor
audience --redis-url`` too), so each recent buyer's published row is replaced by their history with the newer
purchases, and customers the model does not know join. Scores that depend on one customer alone (item
affinity) are carried over: only the customers whose data changed are scored again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from scoring.audience import Population, Scored
from scoring.history import CustomerRow, PurchaseHistory


@dataclass(frozen=True)
class RecentBuyer:
    """A customer who bought since the model's data: their published history with the newer purchases, and
    their totals to match (``service.domain.customer.recent_buyer`` builds it for the API and the CLI alike)."""

    customer_id: str
    history: CustomerRow
    orders: int
    spend: float
    first_day: float  # inf without purchases
    last_day: float  # -inf without purchases
    country: int  # -1: unknown (a customer the model does not know)


def with_recent(base: Population, recent: Sequence[RecentBuyer]) -> Population:
    """``base`` with the purchases customers made since its data, sorted by customer id: each recent buyer's
    history and totals replace their published ones, and customers it did not hold join it."""
    if not recent:
        return base
    recent_ids = np.asarray([r.customer_id for r in recent], dtype=str)
    keep = np.flatnonzero(~np.isin(base.customer_ids, recent_ids))
    ids = np.concatenate([base.customer_ids[keep].astype(str), recent_ids])
    order = np.argsort(ids, kind="stable")
    n_items = base.history.shape[1]
    lengths = np.asarray([len(r.history.items) for r in recent], dtype=np.int64)
    indptr = np.zeros(len(recent) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    cols = np.concatenate([np.asarray(r.history.items, dtype=np.int32) for r in recent])

    def merged(old: sp.csr_matrix, values: list[np.ndarray]) -> sp.csr_matrix:
        new = sp.csr_matrix((np.concatenate(values).astype(old.dtype), cols, indptr), shape=(len(recent), n_items))
        return sp.vstack([old[keep], new], format="csr")[order]

    h = base.history
    first_day = None
    if h.first_day is not None:
        first_day = merged(h.first_day, [r.history.first_day if r.history.first_day is not None
                                         else np.full(len(r.history.items), np.nan) for r in recent])
    history = PurchaseHistory(merged(h.orders, [r.history.orders for r in recent]),
                              merged(h.quantity, [r.history.quantity for r in recent]),
                              merged(h.last_day, [r.history.last_day for r in recent]), h.now_day, first_day)

    def column(name: str, dtype: type) -> np.ndarray:
        values = np.asarray([getattr(r, name) for r in recent], dtype=dtype)
        return np.concatenate([getattr(base, name)[keep].astype(dtype), values])[order]

    return Population(ids[order], history, column("orders", np.int64), column("spend", np.float64),
                      column("first_day", np.float64), column("last_day", np.float64), column("country", np.int64))


def carried(old: Scored, old_ids: np.ndarray, population: Population, stale: np.ndarray,
            score: Callable[[Population], Scored]) -> Scored:
    """Scores of ``population`` from ``old`` (scores of customers ``old_ids``, sorted): a customer keeps their old
    score unless ``stale`` (their data changed since) or new, and those are scored again with ``score``. For
    scores that depend on one customer alone (item affinity), so a purchase costs its customer's row, not a
    rescoring of everyone."""
    ids = population.customer_ids
    at = np.minimum(np.searchsorted(old_ids, ids), max(len(old_ids) - 1, 0))
    found = (old_ids[at] == ids) if len(old_ids) else np.zeros(len(ids), dtype=bool)
    redo = np.flatnonzero(stale | ~found)
    if not len(redo) and len(ids) == len(old_ids):
        return old
    fresh = score(population.rows(redo))
    taken = np.where(found, at, 0)

    def mix(before: np.ndarray, after: np.ndarray) -> np.ndarray:
        out = before[taken] if len(before) else np.empty((len(ids), *before.shape[1:]), dtype=before.dtype)
        out[redo] = after
        return out

    extra = None if old.extra is None or fresh.extra is None else mix(old.extra, fresh.extra)
    return Scored(mix(old.score, fresh.score), mix(old.item, fresh.item), mix(old.bought, fresh.bought), extra)
