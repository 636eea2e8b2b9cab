"""Low-dimensional item embeddings published with every model, whatever its algorithm.

The message bandit needs a compact customer context; a customer's embedding is the weighted mean of the
embeddings of the items they bought (``customer_embedding``), so it is available for any customer the
moment their history is known, including live purchases, without a per-customer array in Redis.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from scoring.history import PurchaseHistory

EMBEDDING_DIM = 16


def item_embeddings(history: PurchaseHistory, dim: int = EMBEDDING_DIM, seed: int = 0) -> np.ndarray:
    """(n_items, dim) float32, rows L2-normalised: truncated SVD of the log-scaled, row-normalised matrix."""
    n_users, n_items = history.shape
    k = min(dim, n_users - 1, n_items - 1)
    out = np.zeros((n_items, dim), dtype=np.float32)
    if k < 1 or history.orders.nnz == 0:
        return out
    m = sp.csr_matrix((np.log1p(history.orders.data).astype(np.float32), history.orders.indices,
                       history.orders.indptr), shape=history.shape)
    row_norms = np.sqrt(np.add.reduceat(m.data ** 2, m.indptr[:-1])) if m.nnz else np.zeros(0)
    row_norms[np.diff(m.indptr) == 0] = 1.0
    m.data /= np.repeat(row_norms, np.diff(m.indptr)).astype(np.float32)
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
    m = sp.csr_matrix(m)
    mt = m.T.tocsr()  # products with a CSR transpose are several times faster than with the CSC view
    q, _ = np.linalg.qr(m @ rng.standard_normal((m.shape[1], k + oversample)).astype(m.dtype))
    for _ in range(power_iterations):
        q, _ = np.linalg.qr(mt @ q)
        q, _ = np.linalg.qr(m @ q)
    v, s, _ = np.linalg.svd(mt @ q, full_matrices=False)  # (Qᵀ M)ᵀ = V S Uᵀ: its left factor is M's V
    return s[:k], v[:, :k].T


def customer_embedding(embeddings: np.ndarray, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted (log1p of order counts) mean of the bought items' embeddings, L2-normalised; zeros if none."""
    if len(items) == 0:
        return np.zeros(embeddings.shape[1], dtype=np.float32)
    w = np.log1p(np.asarray(weights, dtype=np.float32))
    vector = (embeddings[np.asarray(items)] * w[:, None]).sum(axis=0)
    length = float(np.linalg.norm(vector))
    return (vector / length).astype(np.float32) if length > 0 else vector.astype(np.float32)
