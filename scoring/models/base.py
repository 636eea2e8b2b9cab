"""One small interface in front of every recommender (implicit's models, EASE, popularity, the blend).

The same object is used by the evaluator, the batch export and the HTTP service: a model is fitted on a
``PurchaseHistory`` and scores any history against the whole catalogue, so evaluation measures exactly
what is served and a purchase event changes the next answer without refitting.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cache
from typing import Any, ClassVar, Self

import numpy as np

from scoring.history import CustomerRow, PurchaseHistory


class FitError(ValueError):
    """A model could not be fitted with the parameters it was given (the numbers diverged); nothing was written."""


@dataclass(frozen=True)
class Reason:
    """Why an item was recommended: a kind plus, where one exists, the history item that led to it."""

    kind: str  # "bought-with" | "repeat-purchase" | "popular" | "similar-customers"
    related_item: int | None = None
    period_days: float | None = None  # for "repeat-purchase": the customer's typical re-order interval


@cache
def bought_with_reason(item: int) -> Reason:
    """The (immutable, shared) "bought with ``item``" reason: a page explains ~20 items per request, and
    building a frozen dataclass each time cost more than the numpy work that found the items."""
    return Reason("bought-with", related_item=item)


@dataclass(frozen=True)
class ItemScores:
    """Scores and reasons of some items for one customer (a page to re-rank), plus the per-customer values
    the model derived from the customer's whole score row: given back to ``score_items`` for the same
    customer data, they let it score only the items asked for."""

    scores: np.ndarray  # float32, one per item, exactly ``score_row(row)[items]``
    reasons: list[Reason | None]  # exactly ``explain_row(row, items)``
    row_constants: Any = None  # None: the model has no such values


class Recommender(ABC):
    """A fitted model that scores purchase histories over the whole catalogue."""

    name: ClassVar[str]

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = params

    @abstractmethod
    def fit(self, history: PurchaseHistory, *, progress: bool = False) -> None:
        """Learn from the training histories (rows = customers)."""

    @abstractmethod
    def score(self, history: PurchaseHistory) -> np.ndarray:
        """Dense float32 scores (n_rows, n_items); higher is better. Callers rank and filter."""

    @abstractmethod
    def similar_items(self, item: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to n (item indices, scores) of items bought by the same customers, excluding ``item``."""

    @abstractmethod
    def arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to score, as plain numeric arrays (saved as .npz / copied to Redis)."""

    @classmethod
    @abstractmethod
    def from_arrays(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> Self:
        """Rebuild a fitted model from ``params`` and ``arrays()`` without refitting."""

    def explain(self, history: PurchaseHistory, row: int, item: int) -> Reason | None:
        """Why ``item`` ranks high for customer ``row``; None when the model cannot say."""
        return None

    def explain_many(self, history: PurchaseHistory, row: int, items: np.ndarray) -> list[Reason | None]:
        """``explain`` for each of ``items`` (the service explains every answer it ranks); models override
        it to weight the customer's history once instead of once per item."""
        return [self.explain(history, row, int(item)) for item in np.asarray(items).tolist()]

    def score_row(self, row: CustomerRow) -> np.ndarray:
        """``score`` of one customer as a fresh 1-D float32 array (the caller may modify it).

        The service calls this once per request; models with a cheaper single-customer path override it
        (the shared model tests check that both paths agree)."""
        return self.score(row.as_history())[0]

    def explain_row(self, row: CustomerRow, items: np.ndarray) -> list[Reason | None]:
        """``explain_many`` for one customer given as a ``CustomerRow``."""
        return self.explain_many(row.as_history(), 0, items)

    def discovery_row(self, row: CustomerRow) -> np.ndarray:
        """``score_row`` for a caller that filters out the items of ``row``'s history (a basket's own items,
        discovery only): equal to it bit for bit outside the history, anything on it. Models with terms that
        score only history items (the hybrid's rebuy) skip them."""
        return self.score_row(row)

    def explain_discovery(self, row: CustomerRow, items: np.ndarray) -> list[Reason | None]:
        """``explain_row`` of ``items`` that are not in ``row``'s history (no repeat-purchase test needed)."""
        return self.explain_row(row, items)

    def score_items(self, row: CustomerRow, items: np.ndarray, row_constants: Any = None) -> ItemScores:
        """``score_row(row)[items]`` and ``explain_row(row, items)`` together (re-ranking a page of items).

        ``row_constants`` are those an earlier call returned for the same ``row``; models that need the
        whole row only for such values (the hybrid's CF range) override this to score just ``items``. The
        shared model tests check that every path gives the same scores bit for bit."""
        items = np.asarray(items, dtype=np.int64)
        return ItemScores(self.score_row(row)[items], self.explain_row(row, items))

    def row_constants(self, row: CustomerRow) -> Any:
        """The ``row_constants`` that ``score_items`` derives from ``row`` (None for models that need none),
        computed before any page is asked for: a worker reading its customers ahead of their requests."""
        return self.score_items(row, np.asarray(row.items[:1], dtype=np.int64)).row_constants


def top_n(scores: np.ndarray, n: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the n best items of one score row, best first (equal scores by index),
    skipping ``exclude``."""
    row = scores.astype(np.float32, copy=True)
    if exclude is not None and len(exclude):
        row[exclude] = -np.inf
    n = min(n, int(np.isfinite(row).sum()))
    if n <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    order = ranked_pick(row, partition_top(row, n), n)
    return order, row[order]


def partition_top(row: np.ndarray, k: int) -> np.ndarray:
    """An ``argpartition`` of ``-row`` around place k: its first k entries hold k best scores, and where the
    row is longer, entry k holds the next best, which tells ``ranked_pick`` at no cost whether ties cross the
    cut."""
    return np.argpartition(-row, min(k, len(row) - 1))[:k + 1]


def ranked_pick(row: np.ndarray, pick: np.ndarray, k: int | None = None) -> np.ndarray:
    """The k best indices of ``row``, best first, equal scores by index, given ``pick``: k indices holding k
    best scores, as an ``argpartition`` returns them (or ``partition_top``'s k + 1, the last the next best).

    Exact also at the cut: an ``argpartition`` keeps an arbitrary few of the items tied with the k-th best
    score, so which of them made the list could differ between two ways of ranking the same scores (the API
    and the batch export); the lowest indices take those places here, as everywhere else in a ranking.
    """
    k = len(pick) if k is None else k
    runner_up = row[pick[k]] if len(pick) > k else None
    pick = np.sort(pick[:k])
    order = pick[np.argsort(-row[pick], kind="stable")]
    if not len(order):
        return order
    kth = row[order[-1]]
    if np.isnan(kth) or (runner_up != kth if runner_up is not None
                         else np.count_nonzero(row == kth) == np.count_nonzero(row[order] == kth)):
        return order
    above = order[row[order] > kth]
    return np.concatenate([above, np.flatnonzero(row == kth)[:len(order) - len(above)]])
