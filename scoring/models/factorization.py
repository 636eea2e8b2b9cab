"""Matrix factorization with implicit (ALS, BPR); customers are folded in from their history at score time.

Only the item factors are kept. A customer's vector is recomputed from the served history with one
least-squares solve against the item factors (what implicit's ``recalculate_user`` does), so a customer
unknown at training time, or one who just bought something, is scored without refitting.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import scipy.sparse as sp
from implicit.cpu import _als
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.bpr import BayesianPersonalizedRanking
from implicit.recommender_base import ModelFitError

from scoring.history import PurchaseHistory
from scoring.models.base import FitError, Reason, bought_with_reason
from scoring.models.params import AT_LEAST_ONE, POSITIVE, Param, TunableRecommender
from scoring.models.weighting import WEIGHTINGS, Weighting, positive_top_n
from scoring.threads import limit_blas_threads

SEED = 42


def fold_in(weighted: sp.csr_matrix, item_factors: np.ndarray, regularization: float) -> np.ndarray:
    """Customer factors minimizing the ALS loss given fixed item factors (confidences = ``weighted``)."""
    item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
    users = np.zeros((weighted.shape[0], item_factors.shape[1]), dtype=np.float32)
    if weighted.nnz:
        yty = item_factors.T @ item_factors
        _als._least_squares(
            yty, weighted.indptr, weighted.indices, weighted.data.astype(np.float32), users, item_factors,
            float(regularization), num_threads=0,
        )
    return users


class _FactorizationRecommender(TunableRecommender):
    """Shared scoring, similar items and serialization of a factor model (item factors only)."""


    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.weighting = Weighting(self.params["weighting"], self.params["half_life"])
        self.item_factors = np.zeros((0, self.params["factors"]), dtype=np.float32)

    def _confidence(self, history: PurchaseHistory) -> sp.csr_matrix:
        return self.weighting.apply(history)

    def _users(self, history: PurchaseHistory) -> np.ndarray:
        return fold_in(self._confidence(history), self.item_factors, self.params["regularization"])

    def score(self, history: PurchaseHistory) -> np.ndarray:
        return np.asarray(self._users(history) @ self.item_factors.T, dtype=np.float32)

    def similar_items(self, item: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        norms = np.linalg.norm(self.item_factors, axis=1)
        norms[norms == 0] = 1.0
        cosine = (self.item_factors @ self.item_factors[item]) / (norms * norms[item])
        return positive_top_n(cosine.astype(np.float32), n, item)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"item_factors": self.item_factors, **self.weighting.arrays()}

    @classmethod
    def from_arrays(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> Self:
        model = cls(**params)
        model.item_factors = np.asarray(arrays["item_factors"], dtype=np.float32)
        model.weighting = Weighting.from_arrays(model.params["weighting"], model.params["half_life"], arrays)
        return model

    def explain(self, history: PurchaseHistory, row: int, item: int) -> Reason | None:
        bought = history.items_of(row)
        bought = bought[bought != item]
        if not len(bought):
            return Reason("similar-customers")
        affinity = self.item_factors[bought] @ self.item_factors[item]
        return bought_with_reason(int(bought[int(np.argmax(affinity))]))


class ALSRecommender(_FactorizationRecommender):
    """Implicit-feedback ALS (Hu, Koren, Volinsky 2008) on weighted order counts."""

    name = "als"
    hyperparameters = (
        Param("factors", 64, int, "latent factors", **AT_LEAST_ONE),
        Param("iterations", 15, int, "training epochs", **AT_LEAST_ONE),
        Param("regularization", 10.0, float, "L2 penalty", **POSITIVE),
        Param("alpha", 1.0, float, "confidence scale of a purchase"),
        Param("weighting", "log", str, "confidence of a purchase", WEIGHTINGS),
        Param("half_life", 60.0, float, "time decay of purchases in days (0 = none)"),
    )

    def _confidence(self, history: PurchaseHistory) -> sp.csr_matrix:
        return self.weighting.apply(history) * np.float32(self.params["alpha"])

    def fit(self, history: PurchaseHistory, *, progress: bool = False) -> None:
        self.weighting = Weighting.fit(history, self.params["weighting"], self.params["half_life"])
        with limit_blas_threads():
            model = AlternatingLeastSquares(
                factors=self.params["factors"], regularization=self.params["regularization"],
                iterations=self.params["iterations"], random_state=SEED,
            )
            model.fit(self._confidence(history), show_progress=progress)
        self.item_factors = np.asarray(model.item_factors, dtype=np.float32)


class BPRRecommender(_FactorizationRecommender):
    """Bayesian personalized ranking (SGD on sampled item pairs); the item bias is the last factor."""

    name = "bpr"
    hyperparameters = (
        Param("factors", 64, int, "latent factors", **AT_LEAST_ONE),
        Param("iterations", 100, int, "training epochs", **AT_LEAST_ONE),
        Param("regularization", 0.01, float, "L2 penalty"),
        Param("learning_rate", 0.01, float, "SGD step", **POSITIVE),
        Param("weighting", "log", str, "confidence of a purchase (weights the fold-in)", WEIGHTINGS),
        Param("half_life", 0.0, float, "time decay of purchases in days (0 = none)"),
    )

    def _users(self, history: PurchaseHistory) -> np.ndarray:
        """The confidence-weighted mean of the bought items' factors, bias column set to 1.

        BPR only learns that a customer's items outrank the others, so the centre of their item vectors
        points the right way; an ALS-style least-squares fold-in ranks worse (docs/QUALITY.md).
        """
        weighted = self._confidence(history)
        totals = np.asarray(weighted.sum(axis=1), dtype=np.float32)
        users = np.asarray(weighted @ self.item_factors, dtype=np.float32)
        np.divide(users, totals, out=users, where=totals > 0)
        users[:, -1] = 1.0
        return users

    def fit(self, history: PurchaseHistory, *, progress: bool = False) -> None:
        self.weighting = Weighting.fit(history, self.params["weighting"], self.params["half_life"])
        with limit_blas_threads():
            # One thread: implicit's parallel SGD (Hogwild) makes identical runs differ even with a seed.
            model = BayesianPersonalizedRanking(
                factors=self.params["factors"], learning_rate=self.params["learning_rate"],
                regularization=self.params["regularization"], iterations=self.params["iterations"],
                random_state=SEED, num_threads=1,
            )
            try:
                model.fit(self._confidence(history), show_progress=progress)
            except ModelFitError as exc:
                raise FitError(f"bpr did not converge ({exc}) with learning_rate {self.params['learning_rate']:g} "
                               f"and regularization {self.params['regularization']:g}: try smaller values") from None
        self.item_factors = np.asarray(model.item_factors, dtype=np.float32)
