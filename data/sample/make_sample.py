"""Rebuild ``online_retail_sample.csv``: a small, reproducible excerpt of the UCI Online Retail file.

    python data/sample/make_sample.py [path/to/online_retail.csv.gz]

The excerpt keeps the original layout and the original lines byte for byte (in file order), so the loader
is exercised on the real format and its real dirt:

* all lines of 300 customers drawn with a fixed seed among customers with at least 3 (non-cancelled)
  invoices and at most 80 lines (the cap keeps the file small): 120 of them bought in the last 30 days
  of the log, so a 30-day holdout has truth, 180 did not;
* plus natural dirt from the same period, drawn with the same seed: 200 lines without a customer,
  100 cancellation lines (invoice ``C...``) and 60 non-product lines (postage, fees, ...) of other
  customers. The chosen customers' own cancellations, postage lines and duplicates stay in as well.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
import pandas as pd

SOURCE = "/work/shared/datasets/online-retail/online_retail.csv.gz"
TARGET = Path(__file__).with_name("online_retail_sample.csv")
SEED = 352  # the UCI dataset number
RECENT_CUSTOMERS, OTHER_CUSTOMERS = 120, 180
MIN_INVOICES, MAX_LINES = 3, 80
HOLDOUT_DAYS = 30
NO_CUSTOMER_LINES, CANCELLATION_LINES, NON_PRODUCT_LINES = 200, 100, 60
NON_PRODUCT = {"POST", "DOT", "M", "D", "C2", "CRUK", "PADS", "B", "S", "AMAZONFEE", "BANK CHARGES"}


def main(source: str = SOURCE) -> None:
    with gzip.open(source, "rt", encoding="utf-8", newline="") as fh:
        lines = fh.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    header, body = lines[0], lines[1:]
    df = pd.read_csv(source, dtype=str, keep_default_na=False, na_values=[""])
    if len(df) != len(body):
        raise SystemExit("the source has quoted line breaks; this script assumes one line per row")
    time = pd.to_datetime(df["InvoiceDate"], format="ISO8601")
    cancelled = df["InvoiceNo"].str.startswith("C")
    rng = np.random.default_rng(SEED)

    known = df[df["CustomerID"].notna()].assign(time=time, cancelled=cancelled)
    per_customer = known.groupby("CustomerID").agg(
        lines=("InvoiceNo", "size"),
        invoices=("InvoiceNo", lambda s: s[~s.str.startswith("C")].nunique()),
        last=("time", "max"),
    )
    eligible = per_customer[(per_customer["invoices"] >= MIN_INVOICES) & (per_customer["lines"] <= MAX_LINES)]
    recent = eligible["last"] >= time.max() - pd.Timedelta(days=HOLDOUT_DAYS)
    chosen = np.concatenate([
        rng.choice(np.sort(eligible.index[recent].to_numpy()), RECENT_CUSTOMERS, replace=False),
        rng.choice(np.sort(eligible.index[~recent].to_numpy()), OTHER_CUSTOMERS, replace=False),
    ])
    keep = df["CustomerID"].isin(chosen).to_numpy(dtype=bool, copy=True)

    others = ~keep
    has_customer = df["CustomerID"].notna().to_numpy()
    is_cancelled = cancelled.to_numpy(dtype=bool)
    non_product = df["StockCode"].str.upper().isin(NON_PRODUCT).to_numpy(dtype=bool)
    pools = [
        (others & ~has_customer, NO_CUSTOMER_LINES),
        (others & has_customer & is_cancelled, CANCELLATION_LINES),
        (others & has_customer & ~is_cancelled & non_product, NON_PRODUCT_LINES),
    ]
    for pool, count in pools:
        keep[rng.choice(np.flatnonzero(pool), count, replace=False)] = True

    rows = np.flatnonzero(keep)
    TARGET.write_text("\n".join([header, *(body[i] for i in rows)]) + "\n", encoding="utf-8")
    print(f"{TARGET}: {len(rows):,} rows, {TARGET.stat().st_size / 1e6:.2f} MB, {len(chosen)} sampled "
          f"customers ({RECENT_CUSTOMERS} with purchases in the last {HOLDOUT_DAYS} days)")


if __name__ == "__main__":
    main(*sys.argv[1:2])
