"""Audiences: which customers to target for items, a category, a look-alike seed set or a re-order.

The same arithmetic serves ``POST /v1/audiences`` (over the customers published with the served version)
and ``tailor audience`` (over every customer of a model directory), so the benchmark in
``bench/quality/audience.py`` measures what both answer.

Affinity of customer c for target item j (docs/BENCHMARKS.md, "Audiences")::

    affinity(c, j) = orders(c, j) + (CF_WEIGHT * score(c, j) + ACTIVITY_WEIGHT) * log1p(orders(c))

``orders(c, j)`` is the number of distinct orders of j (re-buying dominates who buys an item next month),
``score`` the served model's score of j in c's row (its within-customer preference: the only signal for
customers who never bought j) and ``log1p(orders(c))`` the customer's volume, which turns a
within-customer preference into something comparable across customers (and alone ranks active customers
first among equal order counts). Several targets (a category, a
promotion's items) aggregate by ``max`` (items) or ``sum`` (categories: a customer buying many of the
category's items ranks above one who buys one of them).

Customers are scored in chunks of at most ``CHUNK_CELLS`` scores (rows x catalogue), one ``model.score``
per chunk, keeping only the target columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from scoring.history import PurchaseHistory
from scoring.models.base import Recommender

CHUNK_CELLS = 1 << 23  # ~32 MB of float32 scores at once, whatever the catalogue
#: Weight of the model's (volume-scaled) score next to the order count; chosen on a validation fold
#: ending where the reported holdout starts (bench/quality/audience.py --validation).
CF_WEIGHT = 0.05
ACTIVITY_WEIGHT = 0.3
MAX_SIZE = 100_000


@dataclass(frozen=True)
class Population:
    """The customers an audience is chosen from, aligned with a model's item index."""

    customer_ids: np.ndarray  # str
    history: PurchaseHistory
    orders: np.ndarray  # int: distinct orders per customer
    spend: np.ndarray  # float
    first_day: np.ndarray  # float days since the epoch (inf without purchases)
    last_day: np.ndarray  # float days since the epoch (-inf without purchases)
    country: np.ndarray  # int index into the version's countries, -1 unknown

    def __len__(self) -> int:
        return len(self.customer_ids)


@dataclass(frozen=True)
class Scored:
    """Per customer: the audience score (-inf = not a candidate), the target behind it and its order count."""

    score: np.ndarray  # float64
    item: np.ndarray  # int64 item index behind the score (-1 none)
    bought: np.ndarray  # float: orders of that item
    extra: np.ndarray | None = None  # due for re-order: days overdue; look-alike: similarity


def chunks(n_rows: int, n_items: int, cells: int = CHUNK_CELLS) -> Iterator[slice]:
    size = max(1, cells // max(1, n_items))
    for start in range(0, n_rows, size):
        yield slice(start, min(n_rows, start + size))


def item_affinity(model: Recommender, population: Population, targets: np.ndarray, *, aggregate: str = "max",
                  cf_weight: float = CF_WEIGHT, activity_weight: float | None = None,
                  cells: int = CHUNK_CELLS) -> Scored:
    """Every customer's affinity for ``targets`` (item indices), vectorised over customers in chunks."""
    targets = np.asarray(targets, dtype=np.int64)
    history = population.history
    n = len(population)
    score = np.full(n, -np.inf)
    item = np.full(n, -1, dtype=np.int64)
    bought = np.zeros(n)
    if not len(targets) or not n:
        return Scored(score, item, bought)
    volume = np.log1p(population.orders.astype(np.float64))
    if activity_weight is None:
        activity_weight = ACTIVITY_WEIGHT
    counts = history.orders.tocsc()[:, targets]
    for rows in chunks(n, history.shape[1], cells):
        model_scores = model.score(history.rows(rows))[:, targets].astype(np.float64)
        orders = counts[rows].toarray().astype(np.float64)
        affinity = orders + (cf_weight * model_scores + activity_weight) * volume[rows, None]
        best = np.argmax(affinity, axis=1)
        score[rows] = affinity.sum(axis=1) if aggregate == "sum" else affinity[np.arange(len(best)), best]
        item[rows] = targets[best]
        bought[rows] = orders[np.arange(len(best)), best]
    return Scored(score, item, bought)


def customer_vectors(item_embeddings: np.ndarray, history: PurchaseHistory) -> np.ndarray:
    """(customers, dim) float32, L2-normalised: log1p(order count)-weighted sums of item embeddings
    (``scoring.embeddings.customer_embedding`` for every customer in one sparse product)."""
    weights = sp.csr_matrix((np.log1p(history.orders.data).astype(np.float32), history.orders.indices,
                             history.orders.indptr), shape=history.shape)
    vectors = np.asarray(weights @ item_embeddings, dtype=np.float32)
    lengths = np.linalg.norm(vectors, axis=1, keepdims=True)
    lengths[lengths == 0] = 1.0
    return vectors / lengths


def lookalike(item_embeddings: np.ndarray, population: Population, seeds: np.ndarray) -> Scored:
    """Cosine similarity of every customer to the centroid of the ``seeds`` (rows); seeds are excluded."""
    n = len(population)
    vectors = customer_vectors(item_embeddings, population.history)
    seeds = np.asarray(seeds, dtype=np.int64)
    centroid = vectors[seeds].mean(axis=0) if len(seeds) else np.zeros(vectors.shape[1], dtype=np.float32)
    length = float(np.linalg.norm(centroid))
    score = np.full(n, -np.inf)
    if length > 0:
        score = (vectors @ (centroid / length)).astype(np.float64)
        score[np.diff(population.history.orders.indptr) == 0] = -np.inf  # no history: nothing to compare
    score[seeds] = -np.inf
    return Scored(score, np.full(n, -1, dtype=np.int64), np.zeros(n), extra=score.copy())


def due_for_reorder(population: Population, now_day: float, targets: np.ndarray | None = None) -> Scored:
    """Customers whose typical re-order interval of an item (``targets``, else any) has passed.

    Interval = (latest purchase of the item - the customer's first purchase) / (orders of it - 1), for items
    bought in at least two orders. Per customer the item with the highest ``orders / (1 + overdue /
    interval)`` counts: frequent re-orders just past their time first, long-forgotten ones last.
    """
    history = population.history
    n = len(population)
    orders = history.orders
    rows = np.repeat(np.arange(n), np.diff(orders.indptr))
    cols = orders.indices.astype(np.int64)
    count = orders.data.astype(np.float64)
    last = history.last_day.data.astype(np.float64)
    first = np.where(np.isfinite(population.first_day), population.first_day, now_day)[rows]
    period = np.where(count >= 2, (last - first) / np.maximum(count - 1, 1), 0.0)
    overdue = now_day - last - period
    keep = (period > 0) & (overdue > 0)
    if targets is not None:
        keep &= np.isin(cols, np.asarray(targets, dtype=np.int64))
    rows, cols, count, period, overdue = rows[keep], cols[keep], count[keep], period[keep], overdue[keep]
    value = count / (1.0 + overdue / period)
    score = np.full(n, -np.inf)
    item = np.full(n, -1, dtype=np.int64)
    bought = np.zeros(n)
    late = np.zeros(n)
    if len(rows):
        order = np.lexsort((-value, rows))  # by customer, best entry first
        firsts = order[np.r_[True, rows[order][1:] != rows[order][:-1]]]
        r = rows[firsts]
        score[r], item[r], bought[r], late[r] = value[firsts], cols[firsts], count[firsts], overdue[firsts]
    periods = np.zeros(n)
    if len(rows):
        periods[r] = period[firsts]
    return Scored(score, item, bought, extra=np.stack([late, periods], axis=1))


def select(scores: np.ndarray, size: int | None, min_score: float | None,
           eligible: np.ndarray | None = None) -> np.ndarray:
    """Rows of the audience, best first: finite scores, ``eligible``, >= ``min_score``, at most ``size``."""
    ok = np.isfinite(scores)
    if eligible is not None:
        ok &= eligible
    if min_score is not None:
        ok &= scores >= min_score
    rows = np.flatnonzero(ok)
    limit = min(size if size is not None else MAX_SIZE, MAX_SIZE, len(rows))
    if limit <= 0:
        return np.empty(0, dtype=np.int64)
    values = scores[rows]
    if limit < len(rows):
        part = np.argpartition(-values, limit - 1)[:limit]
        rows, values = rows[part], values[part]
    return rows[np.lexsort((rows, -values))]
