"""Low-dimensional item embeddings published with every model, whatever its algorithm.

The message bandit needs a compact customer context; a customer's embedding is the weighted mean of the
embeddings of the items they bought (``customer_embedding``), so it is available for any customer the
moment their history is known, including live purchases, without a per-customer array in Redis.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from training.history import PurchaseHistory

EMBEDDING_DIM = 16


def item_embeddings(history: PurchaseHistory, dim: int = EMBEDDING_DIM, seed: int = 0) -> np.ndarray:
    """(n_items, dim) float32, rows L2-normalised: truncated SVD of the log-scaled, row-normalised matrix."""
    n_users, n_items = history.shape
    k = min(dim, n_users - 1, n_items - 1)
    out = np.zeros((n_items, dim), dtype=np.float32)
    if k < 1 or history.orders.nnz == 0:
        return out
    m = history.orders.astype(np.float64).copy()
    m.data = np.log1p(m.data)
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    m = sp.diags(1.0 / norms) @ m
    s, vt = randomized_svd(m, k, seed=seed)
    vectors = (vt.T * s).astype(np.float32)
    lengths = np.linalg.norm(vectors, axis=1, keepdims=True)
    lengths[lengths == 0] = 1.0
    out[:, :k] = vectors / lengths
    return out


def randomized_svd(m: sp.spmatrix, k: int, oversample: int = 10, power_iterations: int = 3,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Top-k singular values and right singular vectors (Halko et al. 2011): a few sparse products instead
    of ARPACK's many, which matters on a million customers."""
    rng = np.random.default_rng(seed)
    sketch = m @ rng.standard_normal((m.shape[1], k + oversample))
    q, _ = np.linalg.qr(sketch)
    for _ in range(power_iterations):
        q, _ = np.linalg.qr(m.T @ q)
        q, _ = np.linalg.qr(m @ q)
    _, s, vt = np.linalg.svd(np.asarray((m.T @ q).T), full_matrices=False)
    return s[:k], vt[:k]


def customer_embedding(embeddings: np.ndarray, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted (log1p of order counts) mean of the bought items' embeddings, L2-normalised; zeros if none."""
    if len(items) == 0:
        return np.zeros(embeddings.shape[1], dtype=np.float32)
    w = np.log1p(np.asarray(weights, dtype=np.float32))
    vector = (embeddings[np.asarray(items)] * w[:, None]).sum(axis=0)
    length = float(np.linalg.norm(vector))
    return (vector / length).astype(np.float32) if length > 0 else vector.astype(np.float32)
