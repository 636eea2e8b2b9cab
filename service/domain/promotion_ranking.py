"""Which live promotions a customer sees, and in which order: eligibility x predicted affinity x weight.

Affinity is the percentile of the best promoted item in the customer's own score row of the served model
(so scales of different algorithms do not matter); customers without a history get the popularity
percentile instead. The definitions and their rules are in ``service.domain.promotions``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from scoring.artifact import item_label
from service.domain.promotions import Promotion
from service.domain.targeting import Catalogue, CustomerFacts

#: Affinity percentiles are computed against at most this many of the catalogue's scores.
PERCENTILE_SAMPLE = 4_096


# -- ranking -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """An eligible promotion with its score and the reason it ranks where it does."""

    promotion: Promotion
    score: float
    affinity: float
    reason: str
    item: str | None


class TargetIndex:
    """Item indices each promotion targets in a catalogue, computed once per (version, definition)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._cache: dict[tuple[str, str, Any], np.ndarray] = {}
        self._samples: dict[str, np.ndarray] = {}
        self._ranks: dict[str, np.ndarray] = {}
        self._max = max_entries
        self._lock = threading.Lock()

    def targets(self, promotion: Promotion, catalogue: Catalogue, inactive: np.ndarray) -> np.ndarray:
        """The promotion's target item indices minus ``inactive`` (an int64 array)."""
        key = (catalogue.version, promotion.promotion_id, promotion.updated_at)
        found = self._cache.get(key)
        if found is None:
            if promotion.site_wide:  # the whole catalogue
                found = np.arange(len(catalogue.item_ids), dtype=np.int64)
                with self._lock:
                    if len(self._cache) >= self._max:
                        self._cache.clear()
                    self._cache[key] = found
                return found[~np.isin(found, inactive)] if len(inactive) else found
            idx = [catalogue.item_index[i] for i in promotion.items if i in catalogue.item_index]
            codes = [catalogue.category_index[c] for c in promotion.categories if c in catalogue.category_index]
            if codes:
                idx.extend(np.flatnonzero(np.isin(catalogue.category_codes, codes)).tolist())
            found = np.unique(np.asarray(idx, dtype=np.int64))
            with self._lock:
                if len(self._cache) >= self._max:
                    self._cache.clear()
                self._cache[key] = found
        if len(inactive) and len(found):
            found = found[~np.isin(found, inactive)]
        return found

    def sample(self, catalogue: Catalogue) -> np.ndarray:
        """A fixed subset of item indices to compare scores against (all items in small catalogues)."""
        found = self._samples.get(catalogue.version)
        if found is None:
            if len(self._samples) >= 4:
                self._samples.clear()
            n = len(catalogue.item_ids)
            found = np.arange(n) if n <= PERCENTILE_SAMPLE else np.sort(
                np.random.default_rng(0).choice(n, PERCENTILE_SAMPLE, replace=False))
            self._samples[catalogue.version] = found
        return found

    def popularity_rank(self, catalogue: Catalogue) -> np.ndarray:
        """Position of every item in the popular list (len(list) for items not in it)."""
        found = self._ranks.get(catalogue.version)
        if found is None:
            if len(self._ranks) >= 4:
                self._ranks.clear()
            items = np.asarray(catalogue.popular.items, dtype=np.int64)
            found = np.full(len(catalogue.item_ids), len(items), dtype=np.int64)
            found[items] = np.arange(len(items))
            self._ranks[catalogue.version] = found
        return found


def _label(catalogue: Catalogue, index: int) -> str:
    return item_label(catalogue.item_meta[index], str(catalogue.item_ids[index]))


def rank(promotions: Iterable[Promotion], customer: CustomerFacts, catalogue: Catalogue | None,
         scores: np.ndarray | None, now: datetime, *, index: TargetIndex,
         inactive: frozenset[int] = frozenset(), skip: Iterable[str] = ()) -> list[Candidate]:
    """Live, eligible promotions, best first, by affinity x weight (ties: weight, then id).

    ``scores`` is the customer's score row from the served model (None for customers without a history:
    then popularity stands in for affinity).
    """
    skipped = set(skip)
    live = [p for p in promotions
            if p.promotion_id not in skipped and p.live(now) and p.eligibility.admits(customer)]
    if not live:
        return []
    out: list[Candidate] = []
    if catalogue is None:
        for p in live:
            out.append(Candidate(p, round(0.5 * p.weight, 6), 0.5, _with_weight("no model to rank by", p), None))
        return _sorted(out)
    ref = None
    if scores is not None:
        row = np.where(np.isfinite(scores), scores, -np.inf)
        ref = np.sort(row[index.sample(catalogue)])
    ranks = index.popularity_rank(catalogue)
    n_popular = len(catalogue.popular.items)
    blocked = np.fromiter(inactive, dtype=np.int64, count=len(inactive))  # once, not per promotion
    for p in live:
        targets = index.targets(p, catalogue, blocked)
        if not len(targets):
            continue
        if ref is not None:
            best = int(targets[np.argmax(row[targets])])
            below = float(np.searchsorted(ref, row[best], side="left")) / max(len(ref), 1)
            affinity = min(max(below, 0.0), 1.0)
            top = max(1, math.ceil(100.0 * (1.0 - affinity)))
            reason = f"matches your purchases: {_label(catalogue, best)} is in your top {top}% of the catalogue"
        else:
            best = int(targets[np.argmin(ranks[targets])])
            position = int(ranks[best])
            if position < n_popular:
                affinity = 1.0 - position / max(n_popular, 1)
                reason = f"popular: {_label(catalogue, best)} is best seller #{position + 1}"
            else:
                affinity = 0.0
                reason = "open to every eligible customer (no purchase history to match yet)"
        if p.site_wide:
            reason = f"site-wide offer; {reason}"
        out.append(Candidate(p, round(affinity * p.weight, 6), affinity, _with_weight(reason, p),
                             str(catalogue.item_ids[best])))
    return _sorted(out)


def _with_weight(reason: str, p: Promotion) -> str:
    return reason if p.weight == 1 else f"{reason}; priority weight {p.weight:g}"


def _sorted(candidates: list[Candidate]) -> list[Candidate]:
    return sorted(candidates, key=lambda c: (-c.score, -c.promotion.weight, c.promotion.promotion_id))


@dataclass(frozen=True)
class Served:
    candidate: Candidate
    decision_id: str | None  # None: a preview, not served

    def to_answer(self) -> dict[str, Any]:
        p = self.candidate.promotion
        return {"promotion_id": p.promotion_id, "name": p.name, "offer": p.offer.to_document(),
                "score": self.candidate.score, "reason": self.candidate.reason, "decision_id": self.decision_id,
                "item_id": self.candidate.item}
