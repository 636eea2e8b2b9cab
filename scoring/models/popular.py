"""Popularity: the same ranking for everybody, the baseline every evaluation is reported against."""

from __future__ import annotations

from typing import Any, Self

import numpy as np

from scoring.history import PurchaseHistory
from scoring.models.base import Reason, top_n
from scoring.models.params import Param, TunableRecommender


def item_popularity(history: PurchaseHistory, window_days: float | None = None) -> np.ndarray:
    """Number of distinct customers who bought each item, counting only the last ``window_days``.

    A customer counts in the window when their latest purchase of the item is inside it; retail demand is
    seasonal, so recent buyers say more about next month than last year's.
    """
    indices = history.orders.indices
    if window_days is not None and window_days > 0:
        indices = indices[history.last_day.data >= history.now_day - window_days]
    return np.bincount(indices, minlength=history.shape[1]).astype(np.float32)


class PopularRecommender(TunableRecommender):
    """Most-bought items first (by distinct customers), optionally over a recent window only."""

    name = "popular"
    hyperparameters = (
        Param("window_days", None, float, "count only buyers of the last N days (default: all time)"),
    )

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.popularity = np.zeros(0, dtype=np.float32)

    def fit(self, history: PurchaseHistory, *, progress: bool = False) -> None:
        self.popularity = item_popularity(history, self.params["window_days"])

    def score(self, history: PurchaseHistory) -> np.ndarray:
        return np.tile(self.popularity, (history.shape[0], 1))

    def similar_items(self, item: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        return top_n(self.popularity, n, np.asarray([item]))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"popularity": self.popularity}

    @classmethod
    def from_arrays(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> Self:
        model = cls(**params)
        model.popularity = np.asarray(arrays["popularity"], dtype=np.float32)
        return model

    def explain(self, history: PurchaseHistory, row: int, item: int) -> Reason | None:
        return Reason("popular")
