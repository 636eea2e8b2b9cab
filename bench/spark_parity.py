"""Quality parity of `--engine spark` with `--algorithm als` (implicit) on one holdout split (issue 13).

    python bench/spark_parity.py [--data ../shared/datasets/online-retail/online_retail.csv.gz]
        [--format online-retail] [--master local[2]] [--mappings customer,item] [ALS flags as key=value ...]

Reads and cleans the log once (``training.data``), makes the holdout split of ``tailor evaluate`` once
(last 30 days), then fits and evaluates on it: implicit ALS (``ALSRecommender``) and Spark ALS
(``SparkALSRecommender``) with the same factors, iterations, regularization, alpha, weighting and half-life,
once per regularization mapping (``training.spark_als.spark_reg_param``). One JVM for all Spark fits.
Prints NDCG@10 overall and discovery and each Spark run's ratio to implicit (target >= 0.95).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.train_bench import machine  # noqa: E402
from scoring.models.factorization import ALSRecommender  # noqa: E402
from training import spark_als  # noqa: E402
from training.data import load_purchase_log  # noqa: E402
from training.evaluate import make_split, run  # noqa: E402
from training.spark_als import REG_MAPPINGS, SparkALSRecommender, spark_reg_param  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared/datasets/online-retail/online_retail.csv.gz"))
    p.add_argument("--format", default="online-retail")
    p.add_argument("--master", default="local[2]")
    p.add_argument("--holdout-days", type=float, default=30.0)
    p.add_argument("--mappings", default=",".join(REG_MAPPINGS))
    p.add_argument("--ratings", default="shift", help="rating mappings to try (training.spark_als.spark_ratings)")
    p.add_argument("--scales", default="1", help="also multiply each mapping's regParam by these factors (a sweep)")
    p.add_argument("params", nargs="*", help="ALS hyper-parameters as name=value (default: ALS defaults)")
    args = p.parse_args()
    params = {k: v for k, v in (kv.split("=", 1) for kv in args.params)}
    params = {k: type(ALSRecommender().params[k])(v) for k, v in params.items()}
    log = load_purchase_log(args.data, fmt=args.format)
    split = make_split(log.interactions, args.holdout_days)  # as `tailor evaluate`
    rows = []

    def record(name: str, model: ALSRecommender, extra: dict) -> dict:
        started = time.perf_counter()
        report = run(model, split)
        row = {"run": name, "ndcg": report.overall.ndcg, "ndcg_discovery": report.discovery.ndcg,
               "fit_s": round(report.fit_seconds, 1), "wall_s": round(time.perf_counter() - started, 1), **extra}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
        return row

    base = record("implicit", ALSRecommender(**params), {})
    weighted = None
    runs = [(m, float(f), r) for r in args.ratings.split(",") for m in args.mappings.split(",")
            for f in args.scales.split(",")]
    for mapping, scale, rating in runs:
        model = SparkALSRecommender(args.master, reg_mapping=mapping, rating_mapping=rating, **params)
        if weighted is None:
            from scoring.models.weighting import Weighting

            model.weighting = Weighting.fit(split.train, model.params["weighting"], model.params["half_life"])
            weighted = model._confidence(split.train)
        reg = spark_reg_param(float(model.params["regularization"]), weighted, mapping) * scale
        spark_als.spark_reg_param = lambda *a, scale=scale: spark_reg_param(*a) * scale
        record(f"spark ({rating} ratings, {mapping} mapping{'' if scale == 1 else f' x {scale:g}'})", model,
               {"regParam": reg})
        spark_als.spark_reg_param = spark_reg_param
    for row in rows:
        row["ndcg_ratio"] = round(row["ndcg"] / base["ndcg"], 3)
        row["discovery_ratio"] = round(row["ndcg_discovery"] / base["ndcg_discovery"], 3)
    print(json.dumps({"machine": machine(), "date": date.today().isoformat(),
                      "params": dict(ALSRecommender(**params).params), "customers": len(split.rows),
                      "items": int(split.train.shape[1]), "train_pairs": int(split.train.orders.nnz),
                      "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
