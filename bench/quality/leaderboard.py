"""The self-tuning default against every baseline, each tuned on validation folds only, on both shared logs.

    python -m bench.quality.leaderboard                       # both logs, Markdown on stdout
    python -m bench.quality.leaderboard --datasets ta-feng --json results.json

Protocol (the same as ``tailor evaluate``): the last 30 days are the reported holdout, every model ranks the
whole catalogue. Each baseline (popularity, buy-again, TIFU-KNN, UP-CF@r and every Tailor algorithm) tries
a small grid on the validation folds that end where the holdout starts (``training.tuning``) and keeps its
best setting **per view**, so in each view the default meets the strongest version of every baseline. The
default is what ``tailor train`` chooses with its default budget on the same folds. Intervals are 95% paired
bootstrap intervals (1,000 resamples of the holdout customers) of the default's NDCG@10 minus the
baseline's: entirely above 0 means the default is better, around 0 a tie.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from scoring.models import create
from scoring.models.ease import MAX_ITEMS
from scoring.threads import limit_blas_threads
from training.data import ColumnNames, load_purchase_log
from training.evaluate import Split, make_split, ndcg_per_customer, rank_variants, view_truths
from training.tuning import DEFAULT_BUDGET_S, search, validation_folds

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"
DATASETS: dict[str, dict[str, Any]] = {
    "online-retail": {"path": SHARED / "online-retail" / "online_retail.csv.gz", "format": "online-retail",
                      "columns": ColumnNames()},
    "ta-feng": {"path": SHARED / "ta-feng" / "ta_feng.csv.gz", "format": "generic",
                "columns": ColumnNames(customer="CUSTOMER_ID", item="PRODUCT_ID", time="TRANSACTION_DT",
                                       quantity="AMOUNT", category="PRODUCT_SUBCLASS",
                                       segments=("AGE_GROUP", "PIN_CODE"))},
}
#: Each baseline's grid (the first entry is its default); small on purpose: two logs, two cores.
GRIDS: dict[str, list[dict[str, Any]]] = {
    "popular": [{}, {"window_days": 30.0}, {"window_days": 90.0}],
    "buy-again": [{}, {"half_life": 30.0}, {"half_life": 365.0}, {"weighting": "log"}],
    "tifu-knn": [{}, {"distance": "euclidean", "neighbours": 300, "alpha": 0.9, "group_decay": 0.5},
                 {"alpha": 0.9}, {"neighbours": 300}],
    "upcf": [{}, {"recency": 5}, {"neighbours": 100}, {"alpha": 0.5}],
    "als": [{}, {"factors": 128}, {"regularization": 50.0}, {"half_life": 0.0}],
    "bpr": [{}],
    "item-knn": [{}, {"neighbours": 50}, {"similarity": "cosine"}, {"half_life": 0.0}],
    "ease": [{}, {"regularization": 50.0}, {"regularization": 800.0}],
    "hybrid": [{}],
}
RESAMPLES = 1_000


def _views(split: Split, algorithm: str, params: dict[str, Any], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-customer NDCG@k (overall, discovery) of one configuration on one split."""
    model = create(algorithm, **params)
    model.fit(split.train)
    (ranked, ranked_new), = rank_variants(split, lambda history: [model.score(history)], k)
    truth, new, keep = view_truths(split)
    return ndcg_per_customer(ranked, truth), ndcg_per_customer(ranked_new[keep], new[keep])


def _validate(folds: list[Split], algorithm: str, params: dict[str, Any], k: int) -> tuple[float, float]:
    values = [_views(split, algorithm, params, k) for split in folds]
    return float(np.mean([o.mean() for o, _ in values])), float(np.mean([d.mean() for _, d in values]))


def _interval(default: np.ndarray, other: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """95% paired bootstrap interval of mean(default - other)."""
    diff = default - other
    picks = rng.integers(0, len(diff), size=(RESAMPLES, len(diff)))
    means = diff[picks].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def board(name: str, budget: float, k: int, only: list[str] | None) -> dict[str, Any]:
    spec = DATASETS[name]
    started = time.perf_counter()
    log = load_purchase_log(spec["path"], fmt=spec["format"], columns=spec["columns"])
    interactions = log.interactions
    n_items = int(interactions["item_id"].nunique())
    folds = validation_folds(interactions, 30.0)
    holdout = make_split(interactions, 30.0)
    tuned = search(interactions, budget_s=budget, k=k, quiet=True)
    assert tuned is not None, "the log is too short for a validation fold"
    rng = np.random.default_rng(0)
    default = _views(holdout, tuned.algorithm, tuned.params, k)
    rows = [{"algorithm": "default", "chosen": f"{tuned.algorithm} {tuned.params}", "view": "both",
             "overall": float(default[0].mean()), "discovery": float(default[1].mean())}]
    for algorithm, grid in GRIDS.items():
        if only and algorithm not in only:
            continue
        if algorithm == "ease" and n_items > MAX_ITEMS:
            rows.append({"algorithm": algorithm, "skipped": f"{n_items:,} items: the closed form is too big"})
            continue
        validated = [(params, *_validate(folds, algorithm, params, k)) for params in grid]
        print(f"{name} {algorithm}: " + "; ".join(f"{p or 'defaults'} {o:.4f}/{d:.4f}" for p, o, d in validated),
              file=sys.stderr, flush=True)
        for view, index in (("overall", 1), ("discovery", 2)):
            params = max(validated, key=lambda v, i=index: v[i])[0]
            measured = _views(holdout, algorithm, params, k)
            position = 0 if view == "overall" else 1
            low, high = _interval(default[position], measured[position], rng)
            rows.append({"algorithm": algorithm, "view": view, "params": params,
                         view: float(measured[position].mean()), "diff_low": low, "diff_high": high})
    return {"dataset": name, "customers": len(holdout.rows), "items": n_items, "tuning": tuned.to_dict(),
            "seconds": round(time.perf_counter() - started, 1), "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    default = result["rows"][0]
    lines = [f"### {result['dataset']} ({result['customers']:,} holdout customers, {result['items']:,} items)",
             "", f"default chose: `{default['chosen']}`", "",
             "| model (tuned per view on validation folds) | overall NDCG@10 | default − it, 95% CI | "
             "discovery NDCG@10 | default − it, 95% CI |", "|---|---|---|---|---|",
             f"| **default** | **{default['overall']:.4f}** | | **{default['discovery']:.4f}** | |"]
    by_algorithm: dict[str, dict[str, Any]] = {}
    for row in result["rows"][1:]:
        by_algorithm.setdefault(row["algorithm"], {}).update(
            {row["view"]: row} if "view" in row else {"skipped": row["skipped"]})
    for algorithm, views in by_algorithm.items():
        if "skipped" in views:
            lines.append(f"| {algorithm} | – | {views['skipped']} | – | |")
            continue
        cells = []
        for view in ("overall", "discovery"):
            row = views[view]
            cells += [f"{row[view]:.4f}", f"[{row['diff_low']:+.4f}, {row['diff_high']:+.4f}]"]
        lines.append(f"| {algorithm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--algorithms", nargs="+", choices=list(GRIDS), help="baselines to run (default: all)")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S, help="the default's tuning budget")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()
    results = []
    with limit_blas_threads():
        for name in args.datasets:
            results.append(board(name, args.budget, args.k, args.algorithms))
            print(markdown(results[-1]) + "\n", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
