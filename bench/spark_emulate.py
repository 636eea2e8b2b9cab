"""Spark's implicit ALS solved in this process, to sweep rating / regularization mappings cheaply (issue 13).

A Spark fit of the Online Retail log costs a JVM and a minute or more per setting on this 2-core machine; a
sweep over mappings times validation folds does not fit in that. ``SparkEmulatedALS`` fits the very ratings
and ``regParam`` that ``SparkALSRecommender`` hands Spark (``spark_inputs``), with Spark's update rule
(``org.apache.spark.ml.recommendation.ALS.computeFactors``, implicit preferences): for each customer (item)

    A = YtY + sum over its ratings r > 0 of alpha*r * y y^T + regParam * n * I,   b = sum (1 + alpha*r) * y

with n its number of ratings (ALS-WR), solved exactly; items first, from unit-norm Gaussian customer
factors, as Spark does. The solve is implicit's exact ``_least_squares`` (A = YtY + reg*I + sum (|c|-1) y y^T,
b = sum of c y over c > 0, with c = 1 + alpha*r), the per-row regularization added through pseudo-columns.
Only the chosen mapping is then confirmed with real Spark (``bench/spark_parity.py`` without ``--emulate``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from implicit.cpu import _als

from scoring.history import PurchaseHistory
from scoring.models.factorization import SEED
from scoring.threads import limit_blas_threads
from training.spark_als import SparkALSRecommender


def _solve(ratings: sp.csr_matrix, fixed: np.ndarray, reg_param: float, alpha: float) -> np.ndarray:
    """One half-step of Spark's implicit ALS: a factor row per row of ``ratings`` given ``fixed``.

    Spark's per-row ``regParam * n`` goes in through ``rank`` pseudo-columns whose factors are the unit
    vectors, one entry each per row with confidence -(1 + regParam * n): implicit adds (|c| - 1) e e^T to A
    and, for c <= 0, nothing to b, i.e. ``regParam * n`` on A's diagonal, while YtY stays the real items'."""
    rank = fixed.shape[1]
    counts = np.diff(ratings.indptr)
    extra = np.where(counts > 0, rank, 0)
    indptr = np.concatenate([[0], np.cumsum(counts + extra)]).astype(np.int64)
    starts = indptr[:-1]
    total = int(indptr[-1])
    indices = np.empty(total, dtype=np.int64)
    data = np.empty(total, dtype=np.float32)
    real = np.repeat(starts, counts) + (np.arange(ratings.nnz) - np.repeat(ratings.indptr[:-1], counts))
    indices[real] = ratings.indices
    data[real] = 1.0 + alpha * ratings.data
    rows = np.flatnonzero(counts)
    pseudo = (np.repeat(starts[rows] + counts[rows], rank) + np.tile(np.arange(rank), len(rows)))
    indices[pseudo] = fixed.shape[0] + np.tile(np.arange(rank), len(rows))
    data[pseudo] = -(1.0 + reg_param * np.repeat(counts[rows], rank))
    augmented = np.vstack([fixed, np.eye(rank, dtype=np.float32)])
    yty = fixed.T @ fixed
    out = np.zeros((ratings.shape[0], rank), dtype=np.float32)
    _als._least_squares(yty, indptr, indices, data, out, augmented, 0.0, num_threads=0)
    return out


def spark_als_items(ratings: sp.coo_matrix, rank: int, iterations: int, reg_param: float, alpha: float,
                    seed: int = SEED) -> np.ndarray:
    """Item factors of Spark's implicit ALS on ``ratings`` (customer x item, all r > 0)."""
    by_customer = ratings.tocsr()
    by_item = by_customer.T.tocsr()
    users = np.random.default_rng(seed).standard_normal((ratings.shape[0], rank)).astype(np.float32)
    users /= np.linalg.norm(users, axis=1, keepdims=True)
    items = np.zeros((ratings.shape[1], rank), dtype=np.float32)
    with limit_blas_threads():
        for _ in range(iterations):
            items = _solve(by_item, users, reg_param, alpha)
            users = _solve(by_customer, items, reg_param, alpha)
    return items


class SparkEmulatedALS(SparkALSRecommender):
    """``SparkALSRecommender`` whose fit runs Spark's update rule here instead of on Spark."""

    def fit(self, history: PurchaseHistory, *, progress: bool = False) -> None:
        ratings, reg = self.spark_inputs(history)
        self.item_factors = spark_als_items(ratings, int(self.params["factors"]), int(self.params["iterations"]),
                                            reg, self.spark_alpha)
        self.spark_params = {**self.mapping(reg), "master": "emulated"}
