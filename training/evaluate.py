"""The honest evaluator: a time split, the whole catalogue, and the popularity baseline beside every run.

The last ``holdout_days`` of the log are hidden; models are fitted on what came before and rank every item
of the catalogue (no sampled negatives) for every customer who bought before the cutoff and bought a
known item after it. Two views are reported because they answer different questions:

* **overall** - truth is everything bought in the holdout and nothing is filtered: "does the list contain
  what the customer buys next?" (re-orders count, which is most of this business);
* **discovery** - truth is only items the customer had never bought, and already-bought items are removed
  from the ranking: "does the model find new products?" (customers with nothing new are skipped).

Models are scored through ``Recommender.score`` on the training histories, i.e. exactly what is served.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from scoring.history import PurchaseHistory
from scoring.models import BASELINE_ALGORITHM, DEFAULT_ALGORITHM, create
from scoring.models.base import Recommender, ranked_pick
from training.matrix import build_history, history_for

CELLS_PER_CHUNK = 1 << 23  # scores materialized at once (rows x items), ~32 MB of float32
BLOCK = 128  # top_k narrows wide rows to whole blocks of this many items first
MAX_CUSTOMERS = 50_000  # beyond this, a fixed random sample of customers is scored (never of items)
METRICS = ("precision", "recall", "ndcg", "map", "hit_rate", "coverage")


@dataclass(frozen=True)
class Metrics:
    """Ranking quality at k, averaged over the customers of one view (coverage: over the catalogue)."""

    precision: float
    recall: float
    ndcg: float
    map: float
    hit_rate: float
    coverage: float
    customers: int


@dataclass(frozen=True)
class Split:
    """Training histories and held-out truth, aligned on the training index."""

    train: PurchaseHistory
    customer_ids: np.ndarray
    item_ids: np.ndarray
    truth: sp.csr_matrix  # training customers x training items, 1 where bought in the holdout
    cutoff: pd.Timestamp
    train_rows: int
    holdout_rows: int
    rows: np.ndarray  # customers evaluated (sorted training row indices)
    eligible: int  # customers with history before the cutoff and a known item after it


@dataclass(frozen=True)
class ModelReport:
    """One algorithm's metrics in both views, its fitted params (as the manifest records them), timings."""

    algorithm: str
    params: dict[str, Any]
    overall: Metrics
    discovery: Metrics
    fit_seconds: float
    score_seconds: float


@dataclass(frozen=True)
class EvaluationResult:
    """One evaluation run: the model and the popularity baseline on the same split."""

    model: ModelReport
    baseline: ModelReport
    k: int
    holdout_days: float
    cutoff: str
    train_rows: int
    holdout_rows: int
    customers: int
    eligible_customers: int
    items: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serializable dict (for the model manifest and ``--json``)."""
        return asdict(self)

    def format(self) -> str:
        """A terminal table: metrics of the model and the baseline, in both views."""
        sampled = (
            f" (random sample of {self.eligible_customers})" if self.customers < self.eligible_customers else ""
        )
        head = (
            f"holdout: last {self.holdout_days:g} days (cutoff {self.cutoff}), {self.customers} customers"
            f"{sampled}, {self.items} items, ranking the whole catalogue at k={self.k}"
        )
        names = [m if m == "coverage" else f"{m}@{self.k}" for m in METRICS]
        width = max(len(self.model.algorithm), len(self.baseline.algorithm), 9)
        lines = [head]
        for view in ("overall", "discovery"):
            customers = getattr(self.model, view).customers
            lines.append("")
            lines.append(f"{view} ({customers} customers)")
            lines.append(f"  {'algorithm':<{width}}  " + "  ".join(f"{n:>12}" for n in names))
            for report in (self.model, self.baseline):
                metrics = getattr(report, view)
                values = "  ".join(f"{getattr(metrics, m):>12.4f}" for m in METRICS)
                lines.append(f"  {report.algorithm:<{width}}  {values}")
        lines.append("")
        lines.append(
            f"fit {self.model.fit_seconds:.2f}s, scoring {self.model.score_seconds:.2f}s "
            f"({self.model.algorithm}); baseline fit {self.baseline.fit_seconds:.2f}s"
        )
        return "\n".join(lines)


class HoldoutError(ValueError):
    """The log cannot be split into a training part and a holdout of the asked length."""


def split_log(
    interactions: pd.DataFrame, holdout_days: float = 30
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """(before, holdout, cutoff) with cutoff = latest timestamp - ``holdout_days``; holdout >= cutoff."""
    if holdout_days <= 0:
        raise ValueError("holdout_days must be positive")
    if len(interactions) == 0:
        raise HoldoutError("cannot evaluate an empty purchase log")
    cutoff = pd.Timestamp(interactions["timestamp"].max()) - pd.Timedelta(days=holdout_days)
    after = (interactions["timestamp"] >= cutoff).to_numpy()
    return interactions.loc[~after], interactions.loc[after], cutoff


def make_split(
    interactions: pd.DataFrame,
    holdout_days: float = 30,
    max_customers: int | None = MAX_CUSTOMERS,
    seed: int = 0,
) -> Split:
    """Train histories (recency measured at the cutoff) and the truth of the holdout on their index.

    Customers evaluated are those with history before the cutoff and a known item after it; above
    ``max_customers`` a fixed-seed uniform sample of them keeps a huge log's evaluation to minutes.
    """
    before, after, cutoff = split_log(interactions, holdout_days)
    if len(before) == 0:
        first, last = interactions["timestamp"].min(), interactions["timestamp"].max()
        raise HoldoutError(f"the log covers {first:%Y-%m-%d}..{last:%Y-%m-%d} ({(last - first).days} days): "
                           f"nothing is left before a {holdout_days:g}-day holdout (cutoff {cutoff:%Y-%m-%d})")
    train, customer_ids, item_ids = build_history(before, now=cutoff)
    holdout = history_for(after, customer_ids, item_ids, now=cutoff)
    truth = sp.csr_matrix(
        (np.ones(holdout.orders.nnz, dtype=np.float32), holdout.orders.indices, holdout.orders.indptr),
        shape=holdout.shape,
    )
    eligible = np.flatnonzero(np.diff(truth.indptr) > 0)
    rows = eligible
    if max_customers is not None and len(eligible) > max_customers:
        rows = np.sort(np.random.default_rng(seed).choice(eligible, size=max_customers, replace=False))
    return Split(train, customer_ids, item_ids, truth, cutoff, len(before), len(after), rows, len(eligible))


def ranking_metrics(ranked: np.ndarray, truth: sp.csr_matrix, n_items: int) -> Metrics:
    """Metrics of top-k lists ``ranked`` (rows x k item indices, best first) against binary ``truth`` rows.

    precision = hits / k; recall = hits / |truth|; NDCG with binary gains and the ideal DCG of
    min(|truth|, k) hits; MAP = sum of precision at each hit / min(|truth|, k); hit rate = share of
    customers with a hit; coverage = distinct recommended items / catalogue size.
    """
    n_rows, k = ranked.shape
    sizes = np.diff(truth.indptr).astype(np.float64)
    if n_rows == 0:
        return Metrics(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0)
    hits = _hits(ranked, truth)
    n_hits = hits.sum(axis=1)
    precision_at = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    average_precision = (precision_at * hits).sum(axis=1) / np.minimum(sizes, k)
    return Metrics(
        precision=float(np.mean(n_hits / k)),
        recall=float(np.mean(n_hits / sizes)),
        ndcg=float(np.mean(_ndcg(hits, sizes))),
        map=float(np.mean(average_precision)),
        hit_rate=float(np.mean(n_hits > 0)),
        coverage=float(len(np.unique(ranked)) / n_items) if n_items else 0.0,
        customers=int(n_rows),
    )


def _ndcg(hits: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Per-customer NDCG of boolean hit rows (binary gains, ideal DCG of min(|truth|, k) hits)."""
    k = hits.shape[1]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discounts)[np.minimum(sizes, k).astype(np.int64) - 1]
    return (hits * discounts).sum(axis=1) / ideal


def ndcg_per_customer(ranked: np.ndarray, truth: sp.csr_matrix) -> np.ndarray:
    """NDCG@k of each row of ``ranked`` (for paired bootstrap intervals between models)."""
    if ranked.shape[0] == 0:
        return np.zeros(0)
    return _ndcg(_hits(ranked, truth), np.diff(truth.indptr).astype(np.float64))


def _hits(ranked: np.ndarray, truth: sp.csr_matrix) -> np.ndarray:
    """Boolean (rows x k): is ranked[r, j] in truth row r (binary search in the sorted truth indices)."""
    truth = sp.csr_matrix(truth)
    truth.sort_indices()
    offset = np.arange(ranked.shape[0], dtype=np.int64)[:, None] * (truth.shape[1] + 1)
    keys = np.repeat(np.arange(truth.shape[0], dtype=np.int64), np.diff(truth.indptr)) * (truth.shape[1] + 1)
    keys += truth.indices
    wanted = (offset + ranked).ravel()
    pos = np.minimum(np.searchsorted(keys, wanted), max(len(keys) - 1, 0))
    found = keys[pos] == wanted if len(keys) else np.zeros(len(wanted), dtype=bool)
    return found.reshape(ranked.shape)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Row-wise indices of the k highest scores, best first, equal scores by index (also at the cut: the
    lowest indices of the items tied with the k-th best, as the API ranks; ``ranked_pick``).

    On wide catalogues a full-row partition dominates the evaluation, so the search is first narrowed to
    the k blocks with the highest maxima (they must hold the top k) plus the ragged tail.
    """
    k = min(k, scores.shape[1])
    full, cols = scores, None
    if scores.shape[1] >= 8 * k * BLOCK:
        cols = _candidates(scores, k)
        scores = np.take_along_axis(scores, cols, axis=1)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part.sort(axis=1)
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    best = np.take_along_axis(part, order, axis=1)
    if cols is not None:
        best = np.take_along_axis(cols, best, axis=1)
    if k:  # rows where more items tie with the k-th best score than the list kept (rare: few scored items)
        kth = np.take_along_axis(full, best[:, -1:], axis=1)
        kept = np.count_nonzero(np.take_along_axis(full, best, axis=1) == kth, axis=1)
        for r in np.flatnonzero(np.count_nonzero(full == kth, axis=1) > kept):
            best[r] = ranked_pick(full[r], best[r])
    return best


def _candidates(scores: np.ndarray, k: int) -> np.ndarray:
    """Sorted column indices per row that contain its top k: the k best blocks by maximum, plus the tail."""
    n_rows, n_items = scores.shape
    full = n_items // BLOCK * BLOCK
    block_max = scores[:, :full].reshape(n_rows, -1, BLOCK).max(axis=2)
    blocks = np.argpartition(-block_max, k - 1, axis=1)[:, :k]
    cols = (blocks[:, :, None] * BLOCK + np.arange(BLOCK)).reshape(n_rows, -1)
    cols.sort(axis=1)
    tail = np.broadcast_to(np.arange(full, n_items), (n_rows, n_items - full))
    return np.hstack([cols, tail])


def evaluate_model(model: Recommender, split: Split, k: int = 10) -> tuple[Metrics, Metrics]:
    """(overall, discovery) metrics of a fitted model on a split, scoring in memory-bounded chunks."""
    return evaluate_variants(split, lambda history: [model.score(history)], k)[0]


def chunks(split: Split) -> Iterator[PurchaseHistory]:
    """The evaluated customers' training histories in memory-bounded chunks (always the same chunks)."""
    chunk = max(1, CELLS_PER_CHUNK // max(split.train.shape[1], 1))
    for start in range(0, len(split.rows), chunk):
        yield split.train.rows(split.rows[start : start + chunk])


def rank_variants(split: Split, score_chunk: Callable[[PurchaseHistory], list[np.ndarray]],
                  k: int = 10) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per variant, the top-k lists of every evaluated customer: (overall, discovery with bought items
    removed), rows aligned with ``split.rows``.

    ``score_chunk(history)`` returns one score matrix per variant for a chunk of customers; the tuner uses
    it to rank every blend of one fitted model from a single set of model outputs per chunk.
    """
    overall: list[list[np.ndarray]] = []
    discovery: list[list[np.ndarray]] = []
    for history in chunks(split):
        bought = history.orders
        bought_rows = np.repeat(np.arange(history.shape[0]), np.diff(bought.indptr))
        for variant, scores in enumerate(score_chunk(history)):
            if variant == len(overall):
                overall.append([])
                discovery.append([])
            scores = np.asarray(scores, dtype=np.float32)
            overall[variant].append(top_k(scores, k))
            scores[bought_rows, bought.indices] = -np.inf
            discovery[variant].append(top_k(scores, k))
    empty = np.zeros((0, min(k, split.train.shape[1])), dtype=np.int64)
    return [(np.vstack(o) if o else empty, np.vstack(d) if d else empty)
            for o, d in zip(overall or [[]], discovery or [[]], strict=True)]


def view_truths(split: Split) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    """(overall truth, discovery truth, rows of customers with something new), aligned with ``split.rows``."""
    truth = split.truth[split.rows]
    bought = split.train.orders[split.rows]
    new = truth - truth.multiply(bought > 0)
    new.eliminate_zeros()
    new = sp.csr_matrix(new)
    return truth, new, np.flatnonzero(np.diff(new.indptr) > 0)


def evaluate_variants(split: Split, score_chunk: Callable[[PurchaseHistory], list[np.ndarray]],
                      k: int = 10) -> list[tuple[Metrics, Metrics]]:
    """(overall, discovery) metrics of several scorings of the same split at once (see ``rank_variants``)."""
    n_items = split.train.shape[1]
    truth, new, keep = view_truths(split)
    return [(ranking_metrics(ranked, truth, n_items), ranking_metrics(ranked_new[keep], new[keep], n_items))
            for ranked, ranked_new in rank_variants(split, score_chunk, k)]


def run(model: Recommender, split: Split, k: int = 10) -> ModelReport:
    """Fit ``model`` on the split's training histories and evaluate it."""
    started = time.perf_counter()
    model.fit(split.train)
    fitted = time.perf_counter()
    overall, discovery = evaluate_model(model, split, k)
    return ModelReport(
        model.name, dict(model.params), overall, discovery, fitted - started, time.perf_counter() - fitted
    )


def evaluate(
    interactions: pd.DataFrame,
    algorithm: str = DEFAULT_ALGORITHM,
    params: dict[str, Any] | None = None,
    holdout_days: float = 30,
    k: int = 10,
    max_customers: int | None = MAX_CUSTOMERS,
    model: Recommender | None = None,
) -> EvaluationResult:
    """Hold out the last ``holdout_days``, fit ``algorithm`` and the popularity baseline, report both.

    ``model``: an unfitted instance to use instead of ``create(algorithm, **params)`` (``--engine spark``)."""
    split = make_split(interactions, holdout_days, max_customers)
    model = run(model if model is not None else create(algorithm, **(params or {})), split, k)
    baseline = run(create(BASELINE_ALGORITHM), split, k)
    return EvaluationResult(
        model=model,
        baseline=baseline,
        k=k,
        holdout_days=float(holdout_days),
        cutoff=split.cutoff.isoformat(),
        train_rows=split.train_rows,
        holdout_rows=split.holdout_rows,
        customers=len(split.rows),
        eligible_customers=split.eligible,
        items=int(split.train.shape[1]),
    )
