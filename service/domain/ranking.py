"""Turning a score row into the answer: filters (purchased, excluded ids, categories, inactive items),
the top n, and a short human reason per item.

Pure functions over numpy arrays and plain lookups; nothing here knows about HTTP or Redis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from scoring.models.base import Reason, partition_top, ranked_pick

EMPTY = np.empty(0, dtype=np.int64)
#: Items in an answer when the request does not say (the API's ``n`` default; answers warmed ahead of
#: requests are computed for it).
DEFAULT_N = 10
#: Category code that matches no item (a ``category=`` filter naming a category the catalogue lacks).
NO_CATEGORY = -2


@dataclass(frozen=True)
class Filters:
    """What an answer must leave out, resolved against one model version's item and category index."""

    blocked: np.ndarray = field(default_factory=lambda: EMPTY)  # item indices never to return
    category: int | None = None  # only items of this category code
    exclude_category: int | None = None  # no items of this category code

    def with_blocked(self, more: np.ndarray) -> Filters:
        return Filters(np.concatenate([self.blocked, np.asarray(more, dtype=np.int64)]), self.category,
                       self.exclude_category)


def item_indices(item_ids: Iterable[str], item_index: Mapping[str, int]) -> np.ndarray:
    """Indices of the ids the model knows (unknown ids are dropped: they cannot be ranked anyway)."""
    found = [item_index[i] for i in item_ids if i in item_index]
    return np.asarray(found, dtype=np.int64)


def resolve_filters(*, inactive: np.ndarray, exclude_ids: Iterable[str], item_index: Mapping[str, int],
                    category_index: Mapping[str, int], category: str | None = None,
                    exclude_category: str | None = None) -> Filters:
    """Filters for one request; inactive items are always blocked."""
    excluded = item_indices(exclude_ids, item_index)
    blocked = np.concatenate([inactive, excluded]) if len(excluded) else inactive
    only = None if category is None else category_index.get(category, NO_CATEGORY)
    not_ = None if exclude_category is None else category_index.get(exclude_category, NO_CATEGORY)
    return Filters(blocked, only, not_)


def rank_scores(scores: np.ndarray, n: int, filters: Filters, category_codes: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """The n best items of one score row that pass ``filters``, best first (non-finite scores dropped).

    ``scores`` is masked in place (callers pass the fresh row of ``score_row``), then ``top_indices``:
    this runs on every request.
    """
    row = np.asarray(scores, dtype=np.float32).ravel()
    if len(filters.blocked):
        row[filters.blocked] = -np.inf
    if filters.category is not None:
        row[category_codes != filters.category] = -np.inf
    if filters.exclude_category is not None:
        row[category_codes == filters.exclude_category] = -np.inf
    k = min(n, len(row))
    if k <= 0:
        return EMPTY, np.empty(0, dtype=np.float32)
    order = top_indices(row, k)
    values = row[order]
    keep = np.isfinite(values)
    return order[keep], values[keep]


#: Every SAMPLE_STRIDE-th score bounds the k-th best from below (see ``top_indices``).
SAMPLE_STRIDE = 16


def top_indices(row: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, best first, ties by index; NaN never ranks.

    Exact, and about 3x faster than an ``argpartition`` of the whole row on a few thousand items: the k-th
    best of every 16th score is a value that at least k scores reach, so every top-k score reaches it too;
    only the few scores at or above it are sorted.
    """
    sample = row[::SAMPLE_STRIDE]
    if len(sample) > k:
        bound = np.partition(sample, len(sample) - k)[len(sample) - k]
        candidates = np.flatnonzero(row >= bound)
        if len(candidates) >= k and not np.isnan(bound):
            return candidates[np.argsort(-row[candidates], kind="stable")[:k]]
    # argpartition of the negated row (partition_top) selects the k smallest quickly; from the top end, ties
    # make it crawl. numpy orders NaN after every number, so a NaN is picked only when fewer than k others remain.
    return ranked_pick(row, partition_top(row, k), k)


def rank_list(items: np.ndarray, scores: np.ndarray, n: int, filters: Filters, category_codes: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """The first n entries of an already ranked list (e.g. the popular list) that pass ``filters``."""
    keep = np.ones(len(items), dtype=bool)
    if len(filters.blocked):
        keep &= ~np.isin(items, filters.blocked)
    if filters.category is not None:
        keep &= category_codes[items] == filters.category
    if filters.exclude_category is not None:
        keep &= category_codes[items] != filters.exclude_category
    return items[keep][:n], scores[keep][:n]


def answer_scores(scores: np.ndarray) -> list[float]:
    """Scores as answers show them, rounded to 6 decimals in one step as the batch export rounds them
    (``training.batch``); Python's ``round`` item by item cost a page of 20 items some 5 µs."""
    return np.round(np.asarray(scores, dtype=np.float64), 6).tolist()


def period_phrase(days: float) -> str:
    """'about every month' reads better than 'every 29.5 days'."""
    for low, high, phrase in ((0, 1.5, "about every day"), (5.5, 8.5, "about every week"),
                              (12.5, 16.5, "about every two weeks"), (26, 35, "about every month"),
                              (80, 100, "about every three months"), (340, 390, "about once a year")):
        if low <= days < high:
            return phrase
    return f"about every {round(days)} days"


def reason_text(reason: Reason | None, item_ids: np.ndarray, source_phrase: Callable[[int], str]) -> str | None:
    """A short reason for an item, or None when the model has none.

    ``source_phrase(item index)`` words where a related item comes from: "you ordered", "you viewed",
    "in your basket".
    """
    if reason is None:
        return None
    kind = reason.kind
    related = reason.related_item
    if kind == "bought-with" and related is not None and 0 <= related < len(item_ids):
        return f"bought with {item_ids[related]} {source_phrase(related)}"
    if kind == "repeat-purchase":
        if reason.period_days and reason.period_days > 0:
            return f"you buy this {period_phrase(float(reason.period_days))}"
        return "you bought this before"
    if kind == "popular":
        return "popular right now"
    if kind == "similar-customers":
        if related is not None and 0 <= related < len(item_ids):
            return f"customers who buy {item_ids[related]} like you also buy this"
        return "customers who buy like you also buy this"
    return None
