"""Validation-only probe: the hybrid plus a TIFU-KNN term with its own weight (an ensemble, not shipped).

    python -m bench.quality.tifu_term ta-feng --hybrid rebuy_weight=2 --tifu distance=euclidean \
        neighbours=300 group_decay=0.5
    python -m bench.quality.tifu_term online-retail

score = hybrid blend (its params, or cf_weight 0.25) + w x minmax(TIFU-KNN score), w in ``WEIGHTS``; the
TIFU term is the neighbours' part only (alpha 0) unless ``--tifu alpha=...`` says otherwise. Fitted and
evaluated on ``training.tuning``'s validation folds (the 30-day folds before the reported holdout, 3,000
customers each at most), never on the holdout. Prints per fold (overall, discovery) NDCG@10 and the means.
Results: docs/QUALITY.md, issue 11.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from bench.quality.leaderboard import DATASETS
from scoring.models import HYPERPARAMETERS, create
from scoring.models.weighting import minmax_rows
from scoring.threads import limit_blas_threads
from training.data import load_purchase_log
from training.evaluate import chunks, evaluate_variants
from training.tuning import fold_cf, validation_folds

WEIGHTS = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0)
CF_WEIGHTS = (None, 0.25)  # None: the hybrid's own cf_weight


def _params(algorithm: str, specs: list[str]) -> dict[str, Any]:
    declared = HYPERPARAMETERS[algorithm]
    return {name: declared[name].convert(value) for name, value in (spec.split("=", 1) for spec in specs)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument("--hybrid", nargs="*", default=[], metavar="NAME=VALUE")
    parser.add_argument("--tifu", nargs="*", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    spec = DATASETS[args.dataset]
    log = load_purchase_log(spec["path"], fmt=spec["format"], columns=spec["columns"])
    n_items = int(log.interactions["item_id"].nunique())
    hybrid = {**fold_cf(n_items), **_params("hybrid", args.hybrid)}
    tifu = {"alpha": 0.0, **_params("tifu-knn", args.tifu)}
    results: dict[tuple[float, float | None], list[tuple[float, float]]] = {}
    with limit_blas_threads():
        for number, split in enumerate(validation_folds(log.interactions, 30.0), start=1):
            started = time.perf_counter()
            model = create("hybrid", **hybrid)
            model.fit(split.train)
            knn = create("tifu-knn", **tifu)
            knn.fit(split.train)
            cache = [(model.components(history), minmax_rows(knn.score(history))) for history in chunks(split)]
            print(f"fold {number}: fitted and scored in {time.perf_counter() - started:.1f}s")
            for weight in WEIGHTS:
                for cf_weight in CF_WEIGHTS:
                    parts = iter(cache)
                    blend = None if cf_weight is None else {
                        "cf_weight": cf_weight, "rebuy_weight": model.params["rebuy_weight"],
                        "popularity_weight": model.params["popularity_weight"]}

                    def score(_history: Any, parts: Any = parts, weight: float = weight,
                              blend: dict[str, float] | None = blend, model: Any = model) -> list[np.ndarray]:
                        components, term = next(parts)
                        return [model.blend(components, blend) + np.float32(weight) * term]

                    overall, discovery = evaluate_variants(split, score, 10)[0]
                    results.setdefault((weight, cf_weight), []).append((overall.ndcg, discovery.ndcg))
    print(f"hybrid {hybrid}  tifu-knn {tifu}")
    print(f"{'tifu w':>7}{'cf_weight':>10}  per fold (overall, discovery)            mean overall  mean discovery")
    for (weight, cf_weight), folds in results.items():
        per_fold = "  ".join(f"({o:.4f}, {d:.4f})" for o, d in folds)
        print(f"{weight:>7}{cf_weight if cf_weight is not None else 'own':>10}  {per_fold}"
              f"  {np.mean([o for o, _ in folds]):.4f}  {np.mean([d for _, d in folds]):.4f}")


if __name__ == "__main__":
    main()
