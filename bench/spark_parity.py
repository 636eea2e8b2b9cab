"""Quality parity of `--engine spark` with `--algorithm als` (implicit) on the holdout or validation folds (issue 13).

    python bench/spark_parity.py [--dataset online-retail|ta-feng] [--master local[2]] [--folds N] [--emulate]
        [--ratings shift] [--mappings customer] [--alphas 1] [--scales 1] [ALS flags as key=value ...]

Reads and cleans the shared log once (``training.data``, the columns of ``bench.quality.leaderboard``).
Without ``--folds`` it makes the holdout split of ``tailor evaluate`` (last 30 days) and fits and evaluates on
it: implicit ALS (``ALSRecommender``) and Spark ALS (``SparkALSRecommender``) with the same factors,
iterations, regularization, alpha, weighting and half-life, once per mapping (rating mapping x regParam
mapping x Spark alpha x regParam scale). With ``--folds N`` it uses the N validation folds of ``tailor
train``'s self-tuning instead, which end where that holdout starts: mappings are chosen there, never on the
reported holdout; NDCG is the mean over folds.
``--emulate`` fits Spark's update rule in this process (``bench/spark_emulate.py``) instead of on Spark,
for sweeps. One JVM for all Spark fits. Prints NDCG@10 overall and discovery and each Spark run's ratio to
implicit (target >= 0.95 in both).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import date
from functools import partial
from pathlib import Path
from statistics import mean

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.quality.leaderboard import DATASETS  # noqa: E402
from bench.train_bench import machine  # noqa: E402
from scoring.models.factorization import ALSRecommender  # noqa: E402
from training.data import load_purchase_log  # noqa: E402
from training.evaluate import make_split, run  # noqa: E402
from training.spark_als import SparkALSRecommender  # noqa: E402
from training.tuning import validation_folds  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="online-retail", choices=sorted(DATASETS))
    p.add_argument("--master", default="local[2]")
    p.add_argument("--holdout-days", type=float, default=30.0)
    p.add_argument("--mappings", default="customer", help="regParam mappings (training.spark_als.spark_reg_param)")
    p.add_argument("--ratings", default="shift", help="rating mappings to try (training.spark_als.spark_ratings)")
    p.add_argument("--alphas", default="1", help="Spark alphas to try (its confidence 1 + alpha x rating)")
    p.add_argument("--scales", default="1", help="multiply each mapping's regParam by these factors (a sweep)")
    p.add_argument("--folds", type=int, default=0, help="N validation folds instead of the holdout")
    p.add_argument("--emulate", action="store_true", help="Spark's update rule in this process, not Spark")
    p.add_argument("params", nargs="*", help="ALS hyper-parameters as name=value (default: ALS defaults)")
    args = p.parse_args()
    params = {k: v for k, v in (kv.split("=", 1) for kv in args.params)}
    params = {k: type(ALSRecommender().params[k])(v) for k, v in params.items()}
    spec = DATASETS[args.dataset]
    log = load_purchase_log(spec["path"], fmt=spec["format"], columns=spec["columns"])
    if args.folds:
        splits = validation_folds(log.interactions, args.holdout_days, args.folds)
    else:
        splits = [make_split(log.interactions, args.holdout_days)]  # as `tailor evaluate`
    spark_class = SparkALSRecommender
    if args.emulate:
        from bench.spark_emulate import SparkEmulatedALS

        spark_class = SparkEmulatedALS
    rows = []

    def record(name: str, make: Callable[[], ALSRecommender]) -> dict:
        started = time.perf_counter()
        reports = [run(make(), split) for split in splits]
        model = make()
        row = {"run": name, "ndcg": mean(r.overall.ndcg for r in reports),
               "ndcg_discovery": mean(r.discovery.ndcg for r in reports),
               "folds": [[round(r.overall.ndcg, 4), round(r.discovery.ndcg, 4)] for r in reports],
               "fit_s": round(sum(r.fit_seconds for r in reports), 1),
               "wall_s": round(time.perf_counter() - started, 1)}
        if isinstance(model, SparkALSRecommender):
            row["regParam_split1"] = model.spark_inputs(splits[0].train)[1]
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        return row

    base = record("implicit", lambda: ALSRecommender(**params))
    runs = [(r, m, float(a), float(f)) for r in args.ratings.split(",") for m in args.mappings.split(",")
            for a in args.alphas.split(",") for f in args.scales.split(",")]
    for rating, mapping, alpha, scale in runs:
        record(f"spark{' (emulated)' if args.emulate else ''}: {rating} ratings, alpha {alpha:g}, {mapping} "
               f"mapping x {scale:g}",
               partial(spark_class, args.master, reg_mapping=mapping, rating_mapping=rating, spark_alpha=alpha,
                       reg_scale=scale, **params))
    for row in rows:
        row["ndcg_ratio"] = round(row["ndcg"] / base["ndcg"], 3)
        row["discovery_ratio"] = round(row["ndcg_discovery"] / base["ndcg_discovery"], 3)
    print(json.dumps({"machine": machine(), "date": date.today().isoformat(), "loadavg": os.getloadavg(),
                      "dataset": args.dataset, "params": dict(ALSRecommender(**params).params),
                      "splits": [{"cutoff": s.cutoff.isoformat(), "customers": len(s.rows),
                                  "items": int(s.train.shape[1]), "train_pairs": int(s.train.orders.nnz)}
                                 for s in splits],
                      "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
