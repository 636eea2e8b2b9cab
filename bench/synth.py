"""A synthetic purchase log with long-tailed popularity, in the generic format (Parquet).

    python bench/synth.py --customers 1000000 --items 100000 --interactions 10000000 --out var/synth.parquet

Item popularity follows a Zipf-like law and customer activity a log-normal one, as in real shops; each
customer's purchases are spread over a year.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def _ids(prefix: str, numbers: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(numbers), pa.string()), "")


def generate(customers: int, items: int, interactions: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    item_weights = 1.0 / np.arange(1, items + 1) ** 0.9
    item_weights /= item_weights.sum()
    activity = rng.lognormal(mean=0.0, sigma=1.0, size=customers)
    activity /= activity.sum()
    cust = rng.choice(customers, size=interactions, p=activity).astype(np.int64)
    cust[:customers] = rng.permutation(customers)  # every customer buys at least once
    item = rng.choice(items, size=interactions, p=item_weights).astype(np.int64)
    start = np.datetime64("2025-01-01T00:00:00", "s").astype(np.int64)
    ts = (start + rng.integers(0, 365 * 86_400, size=interactions)).astype("datetime64[s]")
    return pa.table({
        "customer_id": _ids("c", cust),
        "item_id": _ids("i", item),
        "timestamp": pa.array(ts.astype("datetime64[ms]")),
        "quantity": pa.array(rng.integers(1, 5, size=interactions).astype(np.float64)),
        "price": pa.array(np.round(rng.gamma(2.0, 5.0, size=items)[item], 2)),
    })


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--customers", type=int, default=1_000_000)
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--interactions", type=int, default=10_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    t0 = time.perf_counter()
    table = generate(args.customers, args.items, args.interactions, args.seed)
    pq.write_table(table, args.out)
    frame = pd.read_parquet(args.out, columns=["customer_id"])
    print(f"wrote {table.num_rows:,} rows, {frame['customer_id'].nunique():,} customers to {args.out} "
          f"in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
