"""Grid search of one algorithm's hyper-parameters on the validation folds (never the reported holdout).

    python -m bench.quality.tune hybrid --grid cf_weight=0.3,0.5,0.7 popularity_window_days=14,30
    python -m bench.quality.tune ease --grid regularization=100,200,400 half_life=30,60 --sort discovery

Each combination is fitted and evaluated on every validation fold (see compare.py); rows are printed
best first by the mean overall (or discovery) NDCG@k. This is how the defaults in docs/QUALITY.md were
chosen; the reported holdout is evaluated once afterwards with compare.py.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from typing import Any

import numpy as np

from bench.quality.compare import DEFAULT_DATA, splits
from scoring.models import ALGORITHMS, HYPERPARAMETERS, create
from scoring.threads import limit_blas_threads
from training.data import load_purchase_log
from training.evaluate import run


def parse_grid(algorithm: str, specs: list[str]) -> dict[str, list[Any]]:
    """``name=v1,v2`` strings -> {name: [converted values]}, checked against the declared parameters."""
    declared = HYPERPARAMETERS[algorithm]
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        name, _, values = spec.partition("=")
        if name not in declared or not values:
            raise SystemExit(f"bad --grid entry {spec!r}; {algorithm} parameters: {', '.join(declared)}")
        grid[name] = [declared[name].convert(v) for v in values.split(",")]
    return grid


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("algorithm", choices=list(ALGORITHMS))
    parser.add_argument("--grid", nargs="*", default=[], metavar="NAME=V1,V2")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--holdout-days", type=float, default=30.0)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--sort", choices=("overall", "discovery"), default="overall")
    args = parser.parse_args()

    grid = parse_grid(args.algorithm, args.grid)
    folds = splits(load_purchase_log(args.data, fmt="online-retail").interactions, args.holdout_days, args.folds)
    results = []
    with limit_blas_threads():
        for values in itertools.product(*grid.values()):
            params = dict(zip(grid, values, strict=True))
            reports = [run(create(args.algorithm, **params), split, args.k) for split in folds]
            overall = float(np.mean([r.overall.ndcg for r in reports]))
            discovery = float(np.mean([r.discovery.ndcg for r in reports]))
            results.append((overall, discovery, params))
            print(f"{overall:.4f} {discovery:.4f} {params}", file=sys.stderr)
    key = 0 if args.sort == "overall" else 1
    print(f"mean NDCG@{args.k} over {args.folds} validation folds: overall discovery params")
    for overall, discovery, params in sorted(results, key=lambda r: -r[key]):
        print(f"{overall:.4f}  {discovery:.4f}  {params}")


if __name__ == "__main__":
    main()
