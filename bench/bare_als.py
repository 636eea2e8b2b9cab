"""The reference for the overhead target: a bare script doing only a plain pandas read of the file, the
sparse matrix and implicit's ALS fit with the same parameters as `tailor train --algorithm als`.

    python bench/bare_als.py ../shared/datasets/online-retail/online_retail.csv.gz --factors 64 --iterations 15
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import implicit
import numpy as np
import pandas as pd
import scipy.sparse as sp


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("path")
    p.add_argument("--factors", type=int, default=64)
    p.add_argument("--iterations", type=int, default=15)
    p.add_argument("--regularization", type=float, default=0.01)
    args = p.parse_args()
    t0 = time.perf_counter()
    df = pd.read_csv(args.path)  # the plain read the issue compares against: whole file, pandas defaults
    df = df[df["CustomerID"].notna() & (df["Quantity"] > 0)]
    users, user_ids = pd.factorize(df["CustomerID"])
    items, item_ids = pd.factorize(df["StockCode"])
    matrix = sp.csr_matrix((np.ones(len(df), dtype=np.float32), (users, items)),
                           shape=(len(user_ids), len(item_ids)))
    t1 = time.perf_counter()
    model = implicit.als.AlternatingLeastSquares(factors=args.factors, iterations=args.iterations,
                                                 regularization=args.regularization, random_state=0)
    model.fit(matrix, show_progress=False)
    t2 = time.perf_counter()
    print(f"read+matrix {t1 - t0:.2f}s fit {t2 - t1:.2f}s total {t2 - t0:.2f}s")


if __name__ == "__main__":
    main()
