"""Buy again: rank a customer's own past purchases by how often and how recently they were bought.

Shops selling consumables and wholesale stock are dominated by re-orders; on the Online Retail data this
signal alone beats every collaborative model (docs/QUALITY.md). It needs no fitting: the score is a
function of the served history, so a purchase changes the next answer at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Self

import numpy as np

from scoring.history import CustomerRow, PurchaseHistory
from scoring.models.base import Reason
from scoring.models.params import Param, TunableRecommender
from scoring.models.popular import item_popularity
from scoring.models.weighting import Weighting


def rebuy_scores(history: PurchaseHistory, weighting: Weighting) -> np.ndarray:
    """Dense (rows, n_items) float32: the weighted, decayed order count of bought items, 0 elsewhere."""
    dense = weighting.apply(history).toarray()
    return dense.astype(np.float32, copy=False)


def period_of(orders: float, span: float) -> float | None:
    """Days per re-order: ``span`` (first to latest purchase of the item) over the ``orders - 1`` gaps in it.

    The span starts at the customer's first purchase of the item where the history keeps it, so one who took
    the item up late is read on its own rhythm. Histories without it (models and records from before it was
    kept) start it at their oldest "latest day" over all items, as those versions did: exact for items bought
    on the customer's first visit, too long for items taken up later, too short when every item was bought
    recently.
    """
    return round(span / (orders - 1), 1) if orders >= 2 and span > 0 else None


def repeat_reason(history: PurchaseHistory, row: int, item: int) -> Reason | None:
    """A repeat-purchase reason when the customer has bought ``item`` before (``repeat_reasons_row``)."""
    return repeat_reasons_row(CustomerRow.of(history, row), np.asarray([item]))[0]


def repeat_reasons_row(row: CustomerRow, items: np.ndarray) -> list[Reason | None]:
    """``repeat_reason`` for each of ``items`` with one pass over the customer's history."""
    items = np.asarray(items, dtype=np.int64)
    if not len(row.items) or not len(items):
        return [None] * len(items)
    return repeat_reasons_matched(row, items, row.items[:, None] == items[None, :])


def repeat_reasons_matched(row: CustomerRow, items: np.ndarray, match: np.ndarray,
                           bought: np.ndarray | None = None) -> list[Reason | None]:
    """``repeat_reasons_row`` given ``match = row.items[:, None] == items[None, :]`` and, if known,
    ``bought = match.any(axis=0)`` (callers that need them for their own scores compute them once)."""
    out: list[Reason | None] = [None] * len(items)
    found = np.flatnonzero(match.any(axis=0) if bought is None else bought)
    if not len(found):
        return out
    position = match.argmax(axis=0)
    days, began = row.last_day, row.first_day
    earliest = days.min() if began is None else None  # the old estimate, for rows without first days
    for k in found.tolist():
        at = int(position[k])
        period = period_of(float(row.orders[at]), float(days[at] - (earliest if began is None else began[at])))
        out[k] = Reason("repeat-purchase", related_item=int(items[k]), period_days=period)
    return out


def repeat_reasons_then(row: CustomerRow, items: np.ndarray,
                        others: Callable[[np.ndarray], list[Reason | None]]) -> list[Reason | None]:
    """Repeat-purchase reasons where the customer bought the item, ``others(items left)`` for the rest."""
    items = np.asarray(items, dtype=np.int64)
    reasons = repeat_reasons_row(row, items)
    rest = [k for k, reason in enumerate(reasons) if reason is None]
    if len(rest) == len(items):  # none bought before (always so for a basket: its items are filtered out)
        return others(items)
    if rest:
        for k, reason in zip(rest, others(items[rest]), strict=True):
            reasons[k] = reason
    return reasons


class BuyAgainRecommender(TunableRecommender):
    """The customer's own purchases first (weighted order count x recency decay), then popular items.

    Bought items score ``1 + rebuy`` and every other item its all-time popularity scaled into [0, 1), so a
    customer with few purchases (or none) gets their own items followed by a popularity fallback, never
    the catalogue in id order.
    """

    name = "buy-again"
    hyperparameters = (
        Param("weighting", "orders", str, "how repeat orders count", ("binary", "orders", "log")),
        Param("half_life", 120.0, float, "days after which a purchase counts half (0 = no decay)"),
    )

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.weighting = Weighting(self.params["weighting"], self.params["half_life"])
        self.n_items = 0
        self.fallback = np.zeros(0, dtype=np.float32)

    def fit(self, history: PurchaseHistory, *, progress: bool = False) -> None:
        self.n_items = history.shape[1]
        self.fallback = _fallback_scores(item_popularity(history))

    def _fallback(self) -> np.ndarray:
        """Scaled popularity; zeros for a model saved before it was stored (its old behaviour)."""
        if len(self.fallback) != self.n_items:
            self.fallback = np.zeros(self.n_items, dtype=np.float32)
        return self.fallback

    def score(self, history: PurchaseHistory) -> np.ndarray:
        scores = rebuy_scores(history, self.weighting)
        bought = history.orders
        rows = np.repeat(np.arange(history.shape[0]), np.diff(bought.indptr))
        scores[rows, bought.indices] += np.float32(1.0)
        unbought = np.ones(scores.shape, dtype=bool)
        unbought[rows, bought.indices] = False
        scores[unbought] = np.broadcast_to(self._fallback(), scores.shape)[unbought]
        return scores

    def similar_items(self, item: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"n_items": np.asarray([self.n_items], dtype=np.int64), "fallback": self._fallback()}

    @classmethod
    def from_arrays(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> Self:
        model = cls(**params)
        model.n_items = int(arrays["n_items"][0])
        if "fallback" in arrays:
            model.fallback = np.asarray(arrays["fallback"], dtype=np.float32)
        return model

    def explain(self, history: PurchaseHistory, row: int, item: int) -> Reason | None:
        return repeat_reason(history, row, item) or Reason("popular")

    def explain_many(self, history: PurchaseHistory, row: int, items: np.ndarray) -> list[Reason | None]:
        return self.explain_row(CustomerRow.of(history, row), items)

    def score_row(self, row: CustomerRow) -> np.ndarray:
        scores = self._fallback().copy()
        if len(row.items):
            scores[row.items] = np.float32(1.0) + self.weighting.apply_row(row)
        return scores

    def explain_row(self, row: CustomerRow, items: np.ndarray) -> list[Reason | None]:
        return [reason or Reason("popular") for reason in repeat_reasons_row(row, items)]


def _fallback_scores(popularity: np.ndarray) -> np.ndarray:
    """Popularity scaled into [0, 0.5]: always below a bought item's ``1 + rebuy``."""
    top = float(popularity.max(initial=0.0))
    return (popularity / (2.0 * top) if top > 0 else popularity).astype(np.float32)
