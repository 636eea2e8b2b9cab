"""Coordinate-wise parameter sweep of tifu-knn and upcf on a validation split (docs/QUALITY_TIFU_UPCF.md).

The validation split is the log cut at the reported holdout's cutoff (``--until`` at that time), with its
own last 30 days held out: the reported holdout is never seen. Starting from the papers' settings, one
parameter at a time is varied over a small grid and the value with the best overall NDCG@10 is kept.

    PYTHONPATH=. python bench/sweep_tifu_upcf.py online-retail
    PYTHONPATH=. python bench/sweep_tifu_upcf.py ta-feng /tmp/ta_feng_iso.csv.gz
"""

from __future__ import annotations

import sys
import time

import pandas as pd

from training.data import ColumnNames, load_purchase_log
from training.evaluate import make_split, run

GRIDS = {
    "tifu-knn": [
        ("distance", ["euclidean", "cosine"]),
        ("neighbours", [100, 300, 900]),
        ("alpha", [0.5, 0.7, 0.9]),
        ("group_size", [3, 7, 15]),
        ("within_decay", [0.8, 0.9, 1.0]),
        ("group_decay", [0.5, 0.7, 0.9]),
    ],
    "upcf": [
        ("recency", [1, 5, 10, 50]),
        ("alpha", [0.25, 0.5, 0.75]),
        ("locality", [1.0, 5.0, 10.0]),
        ("neighbours", [100, 300, 1000]),
    ],
}
START = {
    "tifu-knn": {"neighbours": 300, "alpha": 0.7, "within_decay": 0.9, "group_decay": 0.7, "group_size": 7,
                 "distance": "euclidean"},
    "upcf": {"recency": 5, "alpha": 0.25, "locality": 5.0, "neighbours": 300},
}


def load(dataset: str, path: str | None) -> pd.DataFrame:
    if dataset == "online-retail":
        log = load_purchase_log(path or "/work/shared/datasets/online-retail/online_retail.csv.gz",
                                fmt="online-retail")
    else:
        log = load_purchase_log(path or "/tmp/ta_feng_iso.csv.gz", fmt="generic", columns=ColumnNames(
            customer="CUSTOMER_ID", item="PRODUCT_ID", time="TRANSACTION_DT", quantity="AMOUNT",
            price="SALES_PRICE", category="PRODUCT_SUBCLASS"))
    return log.interactions


def main() -> None:
    dataset = sys.argv[1]
    interactions = load(dataset, sys.argv[2] if len(sys.argv) > 2 else None)
    cutoff = pd.Timestamp(interactions["timestamp"].max()) - pd.Timedelta(days=30)
    validation = make_split(interactions.loc[interactions["timestamp"] < cutoff], 30)
    print(f"# {dataset}: validation cutoff {validation.cutoff}, {len(validation.rows)} customers", flush=True)
    for algorithm, grid in GRIDS.items():
        best = dict(START[algorithm])
        for name, values in grid:
            results = []
            for value in values:
                params = {**best, name: value}
                started = time.perf_counter()
                report = run(__import__("training.models", fromlist=["create"]).create(algorithm, **params),
                             validation)
                results.append((report.overall.ndcg, value))
                print(f"| {algorithm} | {params} | {report.overall.ndcg:.4f} | {report.discovery.ndcg:.4f} | "
                      f"{time.perf_counter() - started:.1f}s |", flush=True)
            best[name] = max(results, key=lambda r: r[0])[1]
        print(f"# {algorithm} chosen on validation: {best}", flush=True)


if __name__ == "__main__":
    main()
