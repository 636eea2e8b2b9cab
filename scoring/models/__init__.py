"""The algorithm registry: names the CLI, the manifest and the service use to find a model class.

``HYPERPARAMETERS`` lists every tunable parameter per algorithm (default, type, help, choices); the CLI
turns them into flags (``half_life`` -> ``--half-life``) and ``create`` rejects unknown names.
"""

from __future__ import annotations

from typing import Any

from scoring.models.base import Reason, Recommender, top_n
from scoring.models.buy_again import BuyAgainRecommender
from scoring.models.ease import EASERecommender
from scoring.models.factorization import ALSRecommender, BPRRecommender
from scoring.models.hybrid import HybridRecommender
from scoring.models.item_knn import ItemKNNRecommender
from scoring.models.params import Param
from scoring.models.popular import PopularRecommender
from scoring.models.tifu_knn import TIFUKNNRecommender
from scoring.models.upcf import UPCFRecommender

ALGORITHMS: dict[str, type[Recommender]] = {
    cls.name: cls
    for cls in (
        HybridRecommender,
        BuyAgainRecommender,
        EASERecommender,
        ItemKNNRecommender,
        ALSRecommender,
        BPRRecommender,
        PopularRecommender,
        TIFUKNNRecommender,
        UPCFRecommender,
    )
}
DEFAULT_ALGORITHM = HybridRecommender.name
BASELINE_ALGORITHM = PopularRecommender.name

HYPERPARAMETERS: dict[str, dict[str, Param]] = {
    name: {p.name: p for p in getattr(cls, "hyperparameters", ())} for name, cls in ALGORITHMS.items()
}


def create(name: str, **params: Any) -> Recommender:
    """An unfitted model of algorithm ``name``; params not given take their declared defaults."""
    try:
        cls = ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; expected one of {', '.join(ALGORITHMS)}") from None
    return cls(**params)


def load(name: str, params: dict[str, Any], arrays: dict[str, Any]) -> Recommender:
    """Rebuild a fitted model from a manifest's algorithm name, params and arrays (no refit)."""
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; expected one of {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name].from_arrays(params, arrays)


__all__ = [
    "ALGORITHMS",
    "BASELINE_ALGORITHM",
    "DEFAULT_ALGORITHM",
    "HYPERPARAMETERS",
    "Param",
    "Reason",
    "Recommender",
    "create",
    "load",
    "top_n",
]
