"""Audience quality on a time holdout: precision of 100-customer audiences for the holdout's top items.

    python -m bench.quality.audience                       # Online Retail (shared copy)
    python -m bench.quality.audience --log ta-feng         # Ta Feng grocery
    python -m bench.quality.audience --validation          # the fold ending where the holdout starts

Protocol: the last ``--holdout-days`` (30) are held out. The targets are the ``--items`` (20) items with the
most distinct buyers in the holdout; for each, an audience of ``--size`` (100) customers is chosen from the
customers who bought before the cutoff, using only data before it; precision = share of the audience that
bought the item in the holdout, averaged over the items. Baselines on the same split: the ``size`` most
active customers (distinct orders; the same audience for every item) and "customers who bought the item
most often before" (distinct orders of the item, ties broken by activity). The audience is
``scoring.audience.item_affinity`` with the default model (``hybrid``, default parameters), exactly what
``POST /v1/audiences`` and ``tailor audience`` compute.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from scoring import audience
from scoring.history import to_day
from scoring.models import create
from scoring.threads import limit_blas_threads
from training.data import ColumnNames, load_purchase_log
from training.evaluate import make_split, split_log

SHARED = Path(__file__).resolve().parents[3] / "shared/datasets"
LOGS = {
    "online-retail": (SHARED / "online-retail/online_retail.csv.gz", "online-retail", ColumnNames()),
    "ta-feng": (SHARED / "ta-feng/ta_feng.csv.gz", "generic",
                ColumnNames(customer="CUSTOMER_ID", item="PRODUCT_ID", time="TRANSACTION_DT", quantity="AMOUNT",
                            category="PRODUCT_SUBCLASS")),
}


def population(before: pd.DataFrame, split) -> audience.Population:
    ids = pd.Index(split.customer_ids)
    rows = ids.get_indexer(before["customer_id"])
    n = len(ids)
    pairs = pd.DataFrame({"r": rows, "o": before["order_id"].to_numpy()}).drop_duplicates()
    orders = np.bincount(pairs["r"].to_numpy(), minlength=n)
    days = to_day(before["timestamp"])
    first = np.full(n, np.inf)
    np.minimum.at(first, rows, days)
    last = np.full(n, -np.inf)
    np.maximum.at(last, rows, days)
    return audience.Population(np.asarray(split.customer_ids), split.train, orders, np.zeros(n), first, last,
                               np.full(n, -1))


def precision(scores: np.ndarray, truth_csc, item: int, size: int) -> float:
    chosen = audience.select(scores, size, None)
    bought = truth_csc.indices[truth_csc.indptr[item]:truth_csc.indptr[item + 1]]
    return float(np.isin(chosen, bought).sum()) / size


def run(interactions: pd.DataFrame, holdout_days: float, n_items: int, size: int, cf_weight: float,
        activity_weight: float) -> dict:
    split = make_split(interactions, holdout_days, max_customers=None)
    before, _, cutoff = split_log(interactions, holdout_days)
    pop = population(before, split)
    truth = split.truth.tocsc()
    buyers = np.diff(truth.indptr)
    targets = np.argsort(-buyers, kind="stable")[:n_items]
    with limit_blas_threads():
        started = time.perf_counter()
        model = create("hybrid")
        model.fit(split.train)
        fit_s = time.perf_counter() - started
        activity = pop.orders.astype(np.float64)
        counts = split.train.orders.tocsc()
        rows = {"audience (model)": [], "most active": [], "bought most often": []}
        started = time.perf_counter()
        for item in targets.tolist():
            scored = audience.item_affinity(model, pop, np.asarray([item]), cf_weight=cf_weight,
                                                  activity_weight=activity_weight)
            rows["audience (model)"].append(precision(scored.score, truth, item, size))
            rows["most active"].append(precision(activity, truth, item, size))
            often = counts[:, item].toarray().ravel() + activity / (activity.max() + 1.0)
            rows["bought most often"].append(precision(often, truth, item, size))
        score_s = time.perf_counter() - started
    result = {name: float(np.mean(values)) for name, values in rows.items()}
    return {"cutoff": str(cutoff), "customers": len(pop), "items": int(split.train.shape[1]),
            "targets": n_items, "size": size, "cf_weight": cf_weight, "activity_weight": activity_weight,
            "precision": result,
            "vs most active": result["audience (model)"] / max(result["most active"], 1e-12),
            "vs bought most often": result["audience (model)"] / max(result["bought most often"], 1e-12),
            "fit_s": round(fit_s, 2), "audiences_s": round(score_s, 2),
            "customers_per_s": round(len(pop) * n_items / max(score_s, 1e-9))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", choices=sorted(LOGS), default="online-retail")
    parser.add_argument("--holdout-days", type=float, default=30.0)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--cf-weight", type=float, nargs="+", default=[audience.CF_WEIGHT])
    parser.add_argument("--activity-weight", type=float, nargs="+", default=[audience.ACTIVITY_WEIGHT])
    parser.add_argument("--validation", action="store_true",
                        help="evaluate on the fold that ends where the reported holdout starts")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    path, fmt, columns = LOGS[args.log]
    log = load_purchase_log(path, fmt=fmt, columns=columns)
    interactions = log.interactions
    if args.validation:
        interactions, _, _ = split_log(interactions, args.holdout_days)
    results = [run(interactions, args.holdout_days, args.items, args.size, w, a)
               for w in args.cf_weight for a in args.activity_weight]
    for r in results:
        p = r["precision"]
        print(f"{args.log} cutoff {r['cutoff']} cf_weight {r['cf_weight']} activity_weight {r['activity_weight']}: "
              f"audience {p['audience (model)']:.4f} | "
              f"most active {p['most active']:.4f} | bought most often {p['bought most often']:.4f} | "
              f"x{r['vs most active']:.2f} / x{r['vs bought most often']:.3f} | {r['customers_per_s']:,} customers/s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
