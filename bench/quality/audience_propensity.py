"""Experiment (not shipped): a learned purchase propensity per (customer, item) for audiences.

    pip install -e '.[experiments]'   # scikit-learn: not a Tailor dependency; only this experiment needs it
    python -m bench.quality.audience_propensity --validation [--log ta-feng]

Same protocol as ``bench.quality.audience`` (20 items with most distinct buyers in the last 30 days,
audiences of 100, precision = share that bought the item). A HistGradientBoostingClassifier is fitted on
the fold BEFORE the evaluated one (features at that fold's cutoff, labels = bought in its 30 days), over the
``--train-items`` items with most buyers in that fold and every customer (all buyers of the item, plus a
``--negatives`` sample of the rest weighted back up), then ranks every customer for the evaluated targets.
Features are what an artifact carries or could carry: per pair distinct orders, units, days since the last
and the first purchase, re-order interval and how overdue it is, share of the customer's orders; per
customer orders, days since the last order, tenure, orders in the last 30 / 90 days; the served hybrid
score and its per-customer min-max CF part (also as percentiles over customers); per item buyers and the
share of them in the last 30 days. Results: docs/BENCHMARKS.md, "Audiences (issue 14)".
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from bench.quality.audience import LOGS, population
from scoring.audience import chunks
from scoring.history import to_day
from scoring.models import create
from scoring.threads import limit_blas_threads
from training.data import load_purchase_log
from training.evaluate import make_split, split_log

FEATURES = ("orders", "units", "days_since_item", "days_since_first_item", "interval", "overdue", "share",
            "customer_orders", "days_since_order", "tenure", "orders_30d", "orders_90d",
            "hybrid", "cf", "hybrid_pct", "cf_pct", "item_buyers", "item_recent_share")


def fold(interactions: pd.DataFrame, holdout_days: float, n_items: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(features name -> customers x items, labels) for the ``n_items`` items with most buyers after the cutoff."""
    split = make_split(interactions, holdout_days, max_customers=None)
    before, _, _ = split_log(interactions, holdout_days)
    pop = population(before, split)
    now = split.train.now_day
    n, m = split.train.shape
    truth = split.truth.tocsc()
    items = np.argsort(-np.diff(truth.indptr), kind="stable")[:n_items]
    rows = pd.Index(split.customer_ids).get_indexer(before["customer_id"])
    cols = pd.Index(split.item_ids).get_indexer(before["item_id"])
    days = to_day(before["timestamp"])
    order_days = pd.DataFrame({"r": rows, "o": before["order_id"].to_numpy(), "d": days}).drop_duplicates(["r", "o"])
    recent = {w: np.bincount(order_days["r"][order_days["d"] >= now - w], minlength=n) for w in (30, 90)}
    first_item = pd.DataFrame({"r": rows, "c": cols, "d": days}).groupby(["r", "c"])["d"].min()
    col_of = np.full(m, -1)
    col_of[items] = np.arange(len(items))

    def dense(r: np.ndarray, c: np.ndarray, values: np.ndarray, fill: float) -> np.ndarray:
        keep = col_of[c] >= 0
        out = np.full((n, len(items)), fill, dtype=np.float32)
        out[r[keep], col_of[c[keep]]] = values[keep]
        return out

    h = split.train
    pr = np.repeat(np.arange(n), np.diff(h.orders.indptr))
    pc = h.orders.indices
    f = {"orders": dense(pr, pc, h.orders.data, 0.0), "units": dense(pr, pc, h.quantity.data, 0.0),
         "days_since_item": dense(pr, pc, now - h.last_day.data, 9999.0)}
    fi = first_item.index
    f["days_since_first_item"] = dense(fi.get_level_values(0).to_numpy(), fi.get_level_values(1).to_numpy(),
                                       now - first_item.to_numpy(), 9999.0)
    span = f["days_since_first_item"] - f["days_since_item"]
    interval = np.where((f["orders"] >= 2) & (span > 0), span / np.maximum(f["orders"] - 1, 1), np.nan)
    f["interval"] = interval.astype(np.float32)
    f["overdue"] = (f["days_since_item"] / interval).astype(np.float32)  # NaN without an interval
    per_customer = {"customer_orders": pop.orders, "days_since_order": now - pop.last_day,
                    "tenure": now - pop.first_day, "orders_30d": recent[30], "orders_90d": recent[90]}
    for name, values in per_customer.items():
        f[name] = np.repeat(np.asarray(values, dtype=np.float32)[:, None], len(items), axis=1)
    f["share"] = f["orders"] / np.maximum(f["customer_orders"], 1)
    f["hybrid"] = np.zeros((n, len(items)), dtype=np.float32)
    f["cf"] = np.zeros_like(f["hybrid"])
    with limit_blas_threads():
        model = create("hybrid")
        model.fit(h)
        for chunk in chunks(n, m):
            part = h.rows(chunk)
            f["hybrid"][chunk] = model.score(part)[:, items]
            f["cf"][chunk] = model.components(part)[1][:, items]
    for name in ("hybrid", "cf"):
        f[f"{name}_pct"] = pd.DataFrame(f[name]).rank(pct=True).to_numpy(dtype=np.float32)
    buyers = np.bincount(pc, minlength=m)[items].astype(np.float32)
    late = np.bincount(pc[h.last_day.data >= now - 30], minlength=m)[items]
    f["item_buyers"] = np.repeat(buyers[None], n, axis=0)
    f["item_recent_share"] = np.repeat((late / np.maximum(buyers, 1))[None], n, axis=0)
    labels = split.truth[:, items].toarray() > 0
    return f, labels


def precision(scores: np.ndarray, labels: np.ndarray, size: int) -> float:
    """Mean over item columns of the share of the ``size`` best-scored customers who bought the item."""
    best = np.argsort(-scores, axis=0, kind="stable")[:size]
    return float(np.take_along_axis(labels, best, axis=0).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", choices=sorted(LOGS), default="online-retail")
    parser.add_argument("--holdout-days", type=float, default=30.0)
    parser.add_argument("--validation", action="store_true",
                        help="evaluate on the fold that ends where the reported holdout starts")
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--train-items", type=int, default=300)
    parser.add_argument("--negatives", type=float, default=0.05, help="share of non-buyer pairs trained on")
    args = parser.parse_args()
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier
    except ImportError:
        raise SystemExit("this experiment needs scikit-learn (not a Tailor dependency): "
                         "pip install -e '.[experiments]'") from None

    path, fmt, columns = LOGS[args.log]
    interactions = load_purchase_log(path, fmt=fmt, columns=columns).interactions
    if args.validation:
        interactions, _, _ = split_log(interactions, args.holdout_days)
    previous, _, _ = split_log(interactions, args.holdout_days)
    started = time.perf_counter()
    evaluated, truth = fold(interactions, args.holdout_days, args.items)
    train, labels = fold(previous, args.holdout_days, args.train_items)
    keep = labels | (train["orders"] > 0) | (np.random.default_rng(0).random(labels.shape) < args.negatives)
    weight = np.where(labels | (train["orders"] > 0), 1.0, 1.0 / args.negatives)[keep]
    x = np.stack([train[name][keep] for name in FEATURES], axis=1)
    learner = HistGradientBoostingClassifier(learning_rate=0.05, max_iter=200, max_leaf_nodes=15,
                                             min_samples_leaf=100, random_state=0)
    learner.fit(x, labels[keep], sample_weight=weight)
    grid = np.stack([evaluated[name].ravel() for name in FEATURES], axis=1)
    learned = learner.predict_proba(grid)[:, 1].reshape(truth.shape)
    often = evaluated["orders"] + evaluated["customer_orders"] / 1e6
    shipped = evaluated["orders"] + (0.05 * evaluated["hybrid"] + 0.3) * np.log1p(evaluated["customer_orders"])
    result = {name: precision(s, truth, args.size) for name, s in
              (("propensity", learned), ("shipped", shipped), ("bought most often", often))}
    print(f"{args.log}{' validation' if args.validation else ''}: trained on {int(keep.sum()):,} pairs; "
          + " | ".join(f"{k} {v:.4f}" for k, v in result.items())
          + f" | propensity x{result['propensity'] / result['bought most often']:.3f} of bought most often"
          + f" | {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
