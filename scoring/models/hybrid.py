"""The default model: the customer's own re-purchase signal blended with collaborative filtering.

    score = rebuy_weight * rebuy / max(rebuy) + cf_weight * minmax(cf) + popularity_weight * recent_popularity

* ``rebuy`` - orders containing the item x recency decay (see buy_again); scaled per customer so that
  their most likely re-order is 1 whatever their volume;
* ``cf`` - EASE, min-max scaled per customer; it ranks the items the customer has not bought yet. Above
  ``ease_max_items`` items EASE is fitted on the ``ease_head_items`` items with most buyers and kept
  sparse (on Ta Feng's 24k items it beat the sparse BM25 item-kNN used before by 0.02 overall and 0.01
  discovery NDCG@10 on both validation folds, at a tenth of the fit time); ``cf=item-knn`` remains, and
  ``cf=tifu-knn`` uses TIFU-KNN's score (the customer's decayed basket vector blended with the ``neighbours``
  nearest customers', see tifu_knn) instead of an item-to-item model;
* ``recent_popularity`` - distinct buyers of the last ``popularity_window_days`` days, scaled to [0, 1]:
  seasonal demand and a sensible answer for a customer without history.

The defaults were chosen on Online Retail's validation splits (docs/QUALITY.md); `tailor train` re-chooses
the weights and half-lives on each shop's own validation folds (``training.tuning``), which scores every
blend from one set of ``components`` per fold, so the search costs one fit per CF setting.
Everything but the fitted CF part and the popularity vector is computed from the
served history, so a new purchase changes the next answer without refitting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import numpy as np

from scoring.history import CustomerRow, PurchaseHistory
from scoring.models.base import ItemScores, Reason, bought_with_reason
from scoring.models.buy_again import rebuy_scores, repeat_reason, repeat_reasons_matched, repeat_reasons_then
from scoring.models.ease import MAX_ITEMS, EASERecommender, contributions_block, weight_columns
from scoring.models.item_knn import ItemKNNRecommender
from scoring.models.params import AT_LEAST_ONE, POSITIVE, UNIT, Param, TunableRecommender
from scoring.models.popular import item_popularity
from scoring.models.tifu_knn import TIFUKNNRecommender
from scoring.models.weighting import Weighting, minmax_row, minmax_rows, row_sum

POPULAR = Reason("popular")

CFModel = EASERecommender | ItemKNNRecommender | TIFUKNNRecommender
CF_MODELS: dict[str, type[CFModel]] = {
    "ease": EASERecommender,
    "item-knn": ItemKNNRecommender,
    "tifu-knn": TIFUKNNRecommender,
}


def scaled_popularity(history: PurchaseHistory, window_days: float) -> np.ndarray:
    """Distinct buyers of the last ``window_days`` (0 = all time) scaled to [0, 1]; all time when nobody
    bought in the window (a quiet spell)."""
    popularity = item_popularity(history, window_days)
    if not popularity.any():
        popularity = item_popularity(history)
    return popularity / max(float(popularity.max(initial=0.0)), 1.0)


class HybridRecommender(TunableRecommender):
    """Buy-again + collaborative filtering + recent popularity (the default algorithm)."""

    name = "hybrid"
    hyperparameters = (
        Param("rebuy_weighting", "orders", str, "how repeat orders count in the rebuy signal",
              ("binary", "orders", "log")),
        Param("rebuy_half_life", 365.0, float, "days after which a past purchase counts half (0 = no decay)"),
        Param("rebuy_weight", 1.0, float, "weight of the customer's own [0, 1]-scaled re-purchase signal"),
        Param("cf", "auto", str, "collaborative part; auto = ease (on the catalogue's head above ease_max_items); "
              "tifu-knn = the nearest customers' baskets", ("auto", "ease", "item-knn", "tifu-knn")),
        Param("cf_weight", 0.5, float, "weight of the per-customer [0, 1]-scaled CF score"),
        Param("popularity_weight", 0.15, float, "weight of the [0, 1]-scaled recent popularity"),
        Param("popularity_window_days", 14.0, float, "recent popularity counts buyers of the last N days (0 = all)"),
        Param("regularization", 200.0, float, "EASE L2 penalty lambda", **POSITIVE),
        Param("weighting", "binary", str, "CF input confidence", ("binary", "orders", "log", "bm25")),
        Param("half_life", 60.0, float, "time decay of the CF input in days (0 = none)"),
        Param("neighbours", 100, int, "neighbours per item (cf=item-knn) or nearest customers (cf=tifu-knn)",
              **AT_LEAST_ONE),
        Param("similarity", "bm25", str, "similarity of the item-knn fallback", ("cosine", "bm25")),
        Param("alpha", 0.0, float, "weight of the customer's own basket vector in the cf=tifu-knn part "
              "(0: the neighbours only, the rebuy term is the customer's own part)", **UNIT),
        Param("group_decay", 0.7, float, "r_g: decay per group of baskets", **UNIT),
        Param("distance", "cosine", str, "how nearest customers are found", ("euclidean", "cosine")),
        Param("ease_max_items", 20_000, int, "largest catalogue on which EASE is fitted dense on every item"),
        Param("ease_head_items", 8_000, int,
              "cf=ease above ease_max_items items: EASE on this many items with most buyers, pruned sparse",
              **AT_LEAST_ONE),
    )

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.requested_cf = self.params["cf"]
        self.rebuy = Weighting(self.params["rebuy_weighting"], self.params["rebuy_half_life"])
        self.cf: CFModel | None = None
        self.popularity = np.zeros(0, dtype=np.float32)
        self._popularity_term: tuple[np.ndarray, np.ndarray] | None = None

    def _cf_model(self, kind: str, n_items: int = 0) -> CFModel:
        if kind == "tifu-knn":  # its own basket-vector weighting; the CF input settings do not apply
            return TIFUKNNRecommender(neighbours=self.params["neighbours"], alpha=self.params["alpha"],
                                      group_decay=self.params["group_decay"], distance=self.params["distance"])
        shared = {"weighting": self.params["weighting"], "half_life": self.params["half_life"]}
        if kind == "ease":
            too_big = n_items > min(self.params["ease_max_items"], MAX_ITEMS)
            return EASERecommender(regularization=self.params["regularization"],
                                   head_items=self.params["ease_head_items"] if too_big else 0, **shared)
        return ItemKNNRecommender(
            similarity=self.params["similarity"], neighbours=self.params["neighbours"], **shared
        )

    def fit(self, history: PurchaseHistory, *, progress: bool = False) -> None:
        kind = self.requested_cf
        if kind == "auto":
            kind = "ease"
        self.params["cf"] = kind  # recorded so the manifest says which model was actually fitted
        self.cf = self._cf_model(kind, history.shape[1])
        self.cf.fit(history, progress=progress)
        self.popularity = scaled_popularity(history, self.params["popularity_window_days"])

    def _cf(self) -> CFModel:
        if self.cf is None:
            raise RuntimeError("hybrid model is not fitted")
        return self.cf

    def score(self, history: PurchaseHistory) -> np.ndarray:
        return self.blend(self.components(history))

    def components(self, history: PurchaseHistory) -> tuple[np.ndarray, np.ndarray]:
        """(rebuy scaled to [0, 1] per customer, CF min-max scaled per customer): the blend's inputs."""
        rebuy = rebuy_scores(history, self.rebuy)
        top = rebuy.max(axis=1, keepdims=True, initial=0.0)
        np.divide(rebuy, top, out=rebuy, where=top > 0)
        return rebuy, minmax_rows(self._cf().score(history))

    def blend(self, components: tuple[np.ndarray, np.ndarray], weights: dict[str, float] | None = None,
              popularity: np.ndarray | None = None) -> np.ndarray:
        """The score of ``components`` under this model's weights, or ``weights`` (cf_weight,
        rebuy_weight, popularity_weight) and ``popularity`` (another window's ``scaled_popularity``) when
        the tuner tries another blend of the same fitted model."""
        rebuy, cf = components
        if weights is None:
            scores = np.float32(self.params["cf_weight"]) * cf
            if self.params["rebuy_weight"] != 1.0:
                rebuy = np.float32(self.params["rebuy_weight"]) * rebuy
            scores += rebuy
            scores += self._weighted_popularity()
            return scores
        scores = np.float32(weights["cf_weight"]) * cf
        scores += np.float32(weights["rebuy_weight"]) * rebuy
        scores += np.float32(weights["popularity_weight"]) * (self.popularity if popularity is None else popularity)
        return scores

    def _weighted_popularity(self) -> np.ndarray:
        """``popularity_weight * popularity``, computed once per popularity vector (every request adds it)."""
        cached = self._popularity_term
        if cached is None or cached[0] is not self.popularity:
            cached = self._popularity_term = (self.popularity,
                                              np.float32(self.params["popularity_weight"]) * self.popularity)
        return cached[1]

    def similar_items(self, item: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        return self._cf().similar_items(item, n)

    def arrays(self) -> dict[str, np.ndarray]:
        cf = {f"cf_{key}": value for key, value in self._cf().arrays().items()}
        return {"popularity": self.popularity, **cf}

    @classmethod
    def from_arrays(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> Self:
        model = cls(**params)
        kind = model.params["cf"]
        if kind == "auto":  # params saved before fitting: the arrays tell which CF model was fitted
            if any(key.startswith("cf_weights") for key in arrays):
                kind = "ease"
            elif any(key.startswith("cf_contribution") for key in arrays):
                kind = "tifu-knn"
            else:
                kind = "item-knn"
            model.params["cf"] = kind
        cf_arrays = {key[3:]: value for key, value in arrays.items() if key.startswith("cf_")}
        model.cf = CF_MODELS[kind].from_arrays(dict(model._cf_model(kind).params), cf_arrays)
        model.popularity = np.asarray(arrays["popularity"], dtype=np.float32)
        return model

    def explain(self, history: PurchaseHistory, row: int, item: int) -> Reason | None:
        reason = repeat_reason(history, row, item) or self._cf().explain(history, row, item)
        return reason if reason is not None else Reason("popular")

    def explain_many(self, history: PurchaseHistory, row: int, items: np.ndarray) -> list[Reason | None]:
        return self.explain_row(CustomerRow.of(history, row), items)

    def score_row(self, row: CustomerRow) -> np.ndarray:
        """``score`` of one customer, the same arithmetic in the same order without the matrices."""
        return self._blend_row(row, rebuy=True)

    def discovery_row(self, row: CustomerRow) -> np.ndarray:
        """``score_row`` without the rebuy term, which adds to history items only (the same float operations
        on every other item)."""
        return self._blend_row(row, rebuy=False)

    def _blend_row(self, row: CustomerRow, *, rebuy: bool) -> np.ndarray:
        scores = minmax_row(self._cf().score_row(row))
        scores *= np.float32(self.params["cf_weight"])
        if rebuy and len(row.items):
            scores[row.items] += self._rebuy_row(row)
        scores += self._weighted_popularity()
        return scores

    def _rebuy_row(self, row: CustomerRow) -> np.ndarray:
        """The weighted rebuy term of each of the customer's history items."""
        rebuy = self.rebuy.apply_row(row)
        top = rebuy.max(initial=0.0)
        if top > 0:
            rebuy /= top
        if self.params["rebuy_weight"] != 1.0:
            rebuy *= np.float32(self.params["rebuy_weight"])
        return rebuy

    def explain_row(self, row: CustomerRow, items: np.ndarray) -> list[Reason | None]:
        return _or_popular(repeat_reasons_then(row, items, lambda rest: self._cf().explain_row(row, rest)))

    def explain_discovery(self, row: CustomerRow, items: np.ndarray) -> list[Reason | None]:
        return _or_popular(self._cf().explain_row(row, items))

    def score_items(self, row: CustomerRow, items: np.ndarray, row_constants: Any = None) -> ItemScores:
        """With a CF part that sums weighted rows of one matrix (EASE, dense or sparse; item-kNN), one gather of
        the customer's rows towards ``items`` gives both their CF scores and their reasons; the whole CF row
        is summed only when its range (the per-customer min-max scaling) is not known yet: it is returned,
        with the customer's weighted inputs, as ``row_constants``. Same float operations in the same order
        as ``score_row``, so the scores are equal bit for bit."""
        cf = self._cf()
        items = np.asarray(items, dtype=np.int64)
        if not isinstance(cf, EASERecommender | ItemKNNRecommender) or not len(row.items) or not len(items):
            return super().score_items(row, items, row_constants)
        parts = row_constants if isinstance(row_constants, RowParts) else None
        values = cf.weighting.apply_row(row) if parts is None else parts.cf_values
        gathered = weight_columns(cf.row_matrix, row.items, items, None if parts is None else values)
        if gathered is None:
            return super().score_items(row, items, row_constants)
        scores, block = gathered
        if parts is None:
            whole = row_sum(cf.row_matrix, row.items, values)  # exactly cf.score_row(row)
            parts = RowParts.of(values, self._rebuy_row(row), whole)
            scores = whole[items]
        scores -= parts.low
        if parts.span > 0:
            scores /= parts.span
        else:
            scores.fill(0.0)
        scores *= np.float32(self.params["cf_weight"])
        match = row.items[:, None] == items[None, :]
        bought = match.any(axis=0)
        scores[bought] += parts.rebuy[match.argmax(axis=0)[bought]]
        scores += self._weighted_popularity()[items]
        reasons = repeat_reasons_matched(row, items, match, bought)
        # Items not bought before: "bought with" from the block already gathered (each column on its own, so
        # the bought items' columns, whose answers are not used, need not be taken out first).
        related, contribution = contributions_block(row.items, values, block, items, bought=False)
        reasons = [reason if reason is not None else bought_with_reason(item) if part > 0 else POPULAR
                   for reason, item, part in zip(reasons, related.tolist(), contribution.tolist(), strict=True)]
        return ItemScores(scores, reasons, parts)


def _or_popular(reasons: list[Reason | None]) -> list[Reason | None]:
    """The hybrid's popularity term ranks every item: where nothing else explains one, popularity does."""
    return [POPULAR if reason is None else reason for reason in reasons]


@dataclass(frozen=True)
class RowParts:
    """What ``HybridRecommender.score_items`` derives from one customer's whole history (read-only arrays):
    the CF input confidences, the weighted rebuy term per history item, and the CF row's minimum and span."""

    cf_values: np.ndarray
    rebuy: np.ndarray
    low: np.float32
    span: np.float32

    @classmethod
    def of(cls, cf_values: np.ndarray, rebuy: np.ndarray, cf_row: np.ndarray) -> RowParts:
        cf_values.flags.writeable = False
        rebuy.flags.writeable = False
        low = cf_row.min()
        return cls(cf_values, rebuy, low, cf_row.max() - low)
