"""Every customer published with a model version, in memory, for audiences (``POST /v1/audiences``).

Loaded from the version's customer records (``SCAN`` of ``tailor:hist:VERSION:*`` plus pipelined ``GET``s of
1,000 keys) at most once per version and process, then kept until the version changes. Records are
immutable per version; purchases received as events since training are not part of an audience's
population (they reach it at the next published version). At most ``MAX_CUSTOMERS`` customers are loaded
(the audience is then chosen from the first ones the scan returns, and the answer says so).
"""

from __future__ import annotations

import struct
import threading

import numpy as np
import redis
import scipy.sparse as sp

from redis_state import keys
from redis_state.codec import unpack_customer
from scoring.audience import Population
from scoring.history import PurchaseHistory
from service.infrastructure.customer_reads import scanned_customers

MAX_CUSTOMERS = 500_000
BATCH = 1_000


def load_population(client: redis.Redis, version: str, n_items: int, now_day: float,
                    max_customers: int = MAX_CUSTOMERS) -> tuple[Population, bool]:
    """(population, truncated): the version's customers as one batch history plus their aggregates."""
    ids: list[str] = []
    records = []
    truncated = False
    for found in scanned_customers(client, version, BATCH):
        room = max_customers - len(ids)
        if len(found) > room:
            truncated, found = True, found[:room]
        pipe = client.pipeline(transaction=False)
        for customer in found:
            pipe.get(keys.customer_history(version, customer))
        for customer, blob in zip(found, pipe.execute(), strict=True):
            if blob is None:
                continue
            try:
                records.append(unpack_customer(blob, first_days=True))
            except (ValueError, struct.error):  # a corrupt record is skipped, not fatal
                continue
            ids.append(customer)
        if truncated:
            break
    order = np.argsort(np.asarray(ids, dtype=str), kind="stable") if ids else np.empty(0, dtype=np.int64)
    ids_arr = np.asarray(ids, dtype=str)[order] if ids else np.empty(0, dtype=str)
    records = [records[i] for i in order.tolist()]
    lengths = np.asarray([len(r.items) for r in records], dtype=np.int64)
    indptr = np.zeros(len(records) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])

    def cat(name: str, dtype: type) -> np.ndarray:
        parts = [np.asarray(getattr(r, name), dtype=dtype) for r in records]
        return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)

    items = cat("items", np.int32)
    valid = (items >= 0) & (items < n_items)
    shape = (len(records), n_items)
    if not valid.all():  # entries of items outside the version's index are dropped, whatever their values
        rows = np.repeat(np.arange(len(records)), lengths)[valid]
        np.cumsum(np.bincount(rows, minlength=len(records)), out=indptr[1:])

    def mat(values: np.ndarray) -> sp.csr_matrix:
        """One per-entry value as a matrix; every one gets the same sparsity, whatever its values (0, NaN)."""
        if not valid.all():
            values = values[valid]
        m = sp.csr_matrix((values, items[valid], indptr.copy()), shape=shape)
        m.sort_indices()
        m.sum_duplicates()
        return m

    # First purchase day per item: NaN for records published without it (older versions), which
    # ``scoring.audience.due_for_reorder`` replaces by the customer's first purchase day.
    item_first = [r.item_first_day if r.item_first_day is not None else np.full(len(r.items), np.nan)
                  for r in records]
    first_days = np.concatenate(item_first).astype(np.float64) if item_first else np.empty(0, dtype=np.float64)
    history = PurchaseHistory(mat(cat("orders", np.float32)), mat(cat("quantity", np.float32)),
                              mat(cat("last_day", np.float64)), float(now_day), mat(first_days))
    orders = np.asarray([r.order_count for r in records], dtype=np.int64)
    first = np.asarray([r.first_day if r.order_count > 0 else np.inf for r in records], dtype=np.float64)
    last = np.asarray([r.last_purchase_day if r.order_count > 0 else -np.inf for r in records], dtype=np.float64)
    population = Population(ids_arr, history, orders, np.asarray([r.spend for r in records], dtype=np.float64),
                            first, last, np.asarray([r.country for r in records], dtype=np.int64))
    return population, truncated


class PopulationCache:
    """One population per process: the served version's, loaded once (concurrent requests wait for it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entry: tuple[str, Population, bool] | None = None

    def get(self, client: redis.Redis, version: str, n_items: int, now_day: float) -> tuple[Population, bool]:
        entry = self._entry
        if entry is not None and entry[0] == version:
            return entry[1], entry[2]
        with self._lock:
            entry = self._entry
            if entry is not None and entry[0] == version:
                return entry[1], entry[2]
            population, truncated = load_population(client, version, n_items, now_day)
            self._entry = (version, population, truncated)
            return population, truncated
