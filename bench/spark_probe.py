"""Where a Spark ALS fit of a large log spends its time, step by step (issue 13).

    python bench/spark_probe.py [--data var/synth-10m.parquet] [--iterations 1,2]

Builds the confidence matrix of ``tailor train`` once (``training.data``, ``training.matrix``, ``log``
weighting, 60-day half-life; cached in ``var/spark-probe-ratings.npz``), then in one ``local[2]`` session times:
the session start, ``createDataFrame`` of the ratings (Arrow), a repartition + count (the shuffle the
previous ``SparkALSRecommender.fit`` did before ALS), and one ALS fit (64 factors) per ``--iterations``
value, each including ALS' own partitioning and the item factors brought back to pandas. The JVM's CPU time
is not visible from here: sample ``/proc/PID/stat`` of the ``SparkSubmit`` process beside it. Which BLAS /
LAPACK netlib loaded is printed first (``F2jLAPACK`` = pure Java; ``JNILAPACK`` = the system's
``liblapack.so.3``, e.g. Debian's ``libopenblas0-pthread``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scoring.models.weighting import Weighting  # noqa: E402
from training.data import load_purchase_log  # noqa: E402
from training.matrix import build_history  # noqa: E402
from training.spark_als import spark_ratings, spark_session  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(ROOT / "var" / "synth-10m.parquet"))
    p.add_argument("--iterations", default="1,2")
    p.add_argument("--reg-param", type=float, default=0.0176)
    args = p.parse_args()
    timings: dict[str, float] = {}
    started = time.time()
    cache = ROOT / "var" / "spark-probe-ratings.npz"
    if not cache.exists():
        history, _, _ = build_history(load_purchase_log(args.data).interactions)
        weighted = Weighting.fit(history, "log", 60.0).apply(history).tocoo()
        np.savez(cache, row=weighted.row.astype(np.int32), col=weighted.col.astype(np.int32), data=weighted.data)
    z = np.load(cache)
    frame = pd.DataFrame({"customer": z["row"], "item": z["col"], "rating": spark_ratings(z["data"])})
    timings["read+matrix"] = time.time() - started
    t = time.time()
    spark = spark_session("local[2]", "tailor-probe")
    timings["session"] = time.time() - t
    jvm = spark.sparkContext._jvm
    print("lapack", jvm.dev.ludovic.netlib.lapack.LAPACK.getInstance().getClass().getName(),
          "blas", jvm.dev.ludovic.netlib.blas.BLAS.getInstance().getClass().getName(), flush=True)
    t = time.time()
    ratings = spark.createDataFrame(frame)
    timings["createDataFrame"] = time.time() - t
    t = time.time()
    ratings = ratings.repartition(2).cache()
    ratings.count()
    timings["repartition+count"] = time.time() - t
    print(json.dumps(timings), flush=True)
    from pyspark.ml.recommendation import ALS

    for iterations in (int(x) for x in args.iterations.split(",")):
        t = time.time()
        als = ALS(rank=64, maxIter=iterations, regParam=args.reg_param, implicitPrefs=True, alpha=1.0,
                  userCol="customer", itemCol="item", ratingCol="rating", seed=42, numUserBlocks=2,
                  numItemBlocks=2)
        als.fit(ratings).itemFactors.toPandas()
        timings[f"fit {iterations} iterations"] = time.time() - t
        print(json.dumps(timings), os.getloadavg(), flush=True)


if __name__ == "__main__":
    main()
