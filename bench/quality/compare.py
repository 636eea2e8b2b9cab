"""Every registered algorithm (default parameters) on the same time split, as a Markdown table.

    python -m bench.quality.compare                          # the reported 30-day holdout
    python -m bench.quality.compare --validation 3           # the 3 validation folds used for tuning
    python -m bench.quality.compare --algorithms hybrid popular --json results.json

Validation folds never touch the reported holdout: fold 1 holds out the 30 days before the reported
holdout (training on what precedes them), fold 2 the 30 days before that, and so on; their mean is what
the defaults were tuned on (docs/QUALITY.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scoring.models import ALGORITHMS, create
from scoring.threads import limit_blas_threads
from training.data import load_purchase_log
from training.evaluate import METRICS, Metrics, make_split, run, split_log

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared/datasets/online-retail/online_retail.csv.gz"


def splits(interactions: pd.DataFrame, holdout_days: float, validation: int) -> list[Any]:
    """The reported split, or ``validation`` folds that end where the reported holdout starts."""
    if not validation:
        return [make_split(interactions, holdout_days)]
    folds, before = [], interactions
    for _ in range(validation):
        before, _, _ = split_log(before, holdout_days)
        folds.append(make_split(before, holdout_days))
    return folds


def mean_metrics(values: list[Metrics]) -> dict[str, float]:
    return {m: float(np.mean([getattr(v, m) for v in values])) for m in (*METRICS, "customers")}


def compare(
    interactions: pd.DataFrame, algorithms: list[str], holdout_days: float, k: int, validation: int
) -> list[dict[str, Any]]:
    folds = splits(interactions, holdout_days, validation)
    rows = []
    for name in algorithms:
        reports = [run(create(name), split, k) for split in folds]
        rows.append({
            "algorithm": name,
            "params": reports[0].params,
            "overall": mean_metrics([r.overall for r in reports]),
            "discovery": mean_metrics([r.discovery for r in reports]),
            "fit_seconds": float(np.mean([r.fit_seconds for r in reports])),
            "score_seconds": float(np.mean([r.score_seconds for r in reports])),
        })
        print(f"{name}: overall NDCG@{k} {rows[-1]['overall']['ndcg']:.4f}, "
              f"discovery {rows[-1]['discovery']['ndcg']:.4f}", file=sys.stderr)
    return rows


def markdown(rows: list[dict[str, Any]], k: int) -> str:
    cols = [("ndcg", f"NDCG@{k}"), ("precision", f"P@{k}"), ("recall", f"R@{k}"), ("map", f"MAP@{k}"),
            ("hit_rate", f"HR@{k}"), ("coverage", "coverage")]
    head = ["algorithm"] + [f"overall {t}" for _, t in cols] + [f"discovery {t}" for _, t in cols]
    head += ["fit s", "score s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["algorithm"]]
        cells += [f"{row['overall'][m]:.4f}" for m, _ in cols]
        cells += [f"{row['discovery'][m]:.4f}" for m, _ in cols]
        cells += [f"{row['fit_seconds']:.2f}", f"{row['score_seconds']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="Online Retail CSV (default: shared copy)")
    parser.add_argument("--holdout-days", type=float, default=30.0)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--validation", type=int, default=0, metavar="FOLDS",
                        help="report the mean over this many validation folds instead of the holdout")
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS), choices=list(ALGORITHMS))
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = parser.parse_args()

    started = time.perf_counter()
    log = load_purchase_log(args.data, fmt="online-retail")
    with limit_blas_threads():
        rows = compare(log.interactions, args.algorithms, args.holdout_days, args.k, args.validation)
    what = f"mean of {args.validation} validation folds" if args.validation else "reported holdout"
    print(f"{what}: last {args.holdout_days:g} days, k={args.k}, whole catalogue "
          f"({time.perf_counter() - started:.0f}s)\n")
    print(markdown(rows, args.k))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
