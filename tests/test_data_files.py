"""Purchase-log loader input files: gzip by its magic bytes, typed parquet, and the large-file paths that must
load what pandas loads."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.data_helpers import GENERIC, counts, write
from training.data import DataError, load_purchase_log


def test_gzip_detected_by_magic_bytes(tmp_path: Path) -> None:
    plain = write(tmp_path, GENERIC, "plain.csv")
    packed = tmp_path / "packed.csv"  # no .gz extension on purpose
    packed.write_bytes(gzip.compress(GENERIC.encode()))
    a, b = load_purchase_log(plain), load_purchase_log(packed)
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    assert b.fingerprint == hashlib.sha256(packed.read_bytes()).hexdigest()
    assert a.fingerprint != b.fingerprint


def test_parquet_with_typed_columns(tmp_path: Path) -> None:
    frame = pd.DataFrame({
        "InvoiceNo": ["536365", "536365", "C536366", "536367"],
        "StockCode": ["85123A", "POST", "71053", "71053"],
        "Description": ["HEART", "POSTAGE", "LANTERN", "LANTERN"],
        "Quantity": [6, 1, -1, 2],
        "InvoiceDate": pd.to_datetime(["2010-12-01 08:26", "2010-12-01 08:26", "2010-12-01 09:00",
                                       "2010-12-02 10:00"]).tz_localize("Europe/London"),
        "UnitPrice": [2.55, 18.0, 3.39, 3.39],
        "CustomerID": [17850.0, 17850.0, 17850.0, np.nan],
        "Country": ["United Kingdom"] * 4,
    })
    path = tmp_path / "log.data"
    frame.to_parquet(path)
    log = load_purchase_log(path, fmt="online-retail")
    assert counts(log.report) == {
        "rows_read": 4, "rows_kept": 1, "missing_customer": 1, "returns_cancellations": 1,
        "non_product_codes": 1, "duplicates": 0, "unparseable": 0, "after_until": 0,
    }
    row = log.interactions.iloc[0]
    assert (row["customer_id"], row["item_id"], row["quantity"]) == ("17850", "85123A", 6.0)
    assert row["timestamp"] == pd.Timestamp("2010-12-01 08:26")  # London in December is UTC
    assert str(log.interactions["timestamp"].dtype) == "datetime64[ns]"


def test_parquet_bad_values_name_the_row(tmp_path: Path) -> None:
    frame = pd.DataFrame({"customer_id": ["a", "b", "c"], "item_id": ["x", "y", "z"],
                          "timestamp": ["2024-01-01", "soon", "2024-01-02"]})
    path = tmp_path / "log.parquet"
    frame.to_parquet(path)
    with pytest.raises(DataError, match=r"1 of 3 rows \(33.3%\) have an unparseable timestamp in column "
                                        r"'timestamp', first at row 2: 'soon'"):
        load_purchase_log(path)


def random_log(times: str, seed: int = 7, n: int = 2000) -> pd.DataFrame:
    """A generic log with many shared timestamps, multi-line orders and exact repeats, typed as Parquet keeps it.

    ``times``: ``s``/``ms`` resolution over a month (the loader's packed sort), ``ns`` over 400 days (too wide
    to pack: stable argsort), or ``sorted`` (already in time order: no sort at all).
    """
    rng = np.random.default_rng(seed)
    unit, span = {"s": ("s", 30 * 86_400), "ms": ("ms", 30 * 86_400_000), "ns": ("ns", 400 * 86_400 * 10**9),
                  "sorted": ("s", 30 * 86_400)}[times]
    pool = pd.Timestamp("2024-03-01") + pd.to_timedelta(rng.integers(0, span, n // 4), unit=unit)
    frame = pd.DataFrame({
        "customer_id": pd.Series(rng.choice([f"c{i}" for i in range(20)], n), dtype="str"),
        "item_id": pd.Series(rng.choice(list("ABCDE"), n), dtype="str"),
        "timestamp": pd.Series(pool[rng.integers(0, len(pool), n)]).astype("datetime64[ns]"),
        "quantity": rng.integers(1, 3, n).astype(np.float64),
        "price": rng.choice([1.0, 2.5], n),
    })
    frame = pd.concat([frame, frame.iloc[rng.integers(0, n, n // 10)]]).sample(frac=1.0, random_state=seed)
    if times == "sorted":
        frame = frame.sort_values("timestamp", kind="stable")
    return frame.reset_index(drop=True)


@pytest.mark.parametrize("times", ["s", "ms", "ns", "sorted"])
@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_large_log_paths_match_pandas(tmp_path: Path, times: str, kind: str) -> None:
    frame = random_log(times)
    path = tmp_path / f"log.{kind}"
    if kind == "parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    log = load_purchase_log(path)
    expected = frame[~frame.duplicated()].sort_values("timestamp", kind="stable").reset_index(drop=True)
    assert log.report.duplicates == int(frame.duplicated().sum()) > 200
    assert log.report.rows_kept == len(expected)
    df = log.interactions
    cols = ["customer_id", "item_id", "timestamp", "quantity", "price"]
    pd.testing.assert_frame_equal(df[cols], expected[cols], check_dtype=False)
    assert str(df["timestamp"].dtype) == "datetime64[ns]" and df["order_id"].dtype == np.int64
    # no basket column: a basket is a customer's calendar day, numbered by its first line
    orders = expected.groupby(["customer_id", expected["timestamp"].dt.floor("D")], sort=False).ngroup()
    assert df["order_id"].tolist() == orders.tolist() and orders.max() + 1 < len(expected)
    assert log.items["item_id"].tolist() == ["A", "B", "C", "D", "E"]
    assert log.items["price"].tolist() == expected.groupby("item_id")["price"].median().tolist()


def test_parquet_typed_numbers_and_missing_times(tmp_path: Path) -> None:
    t = pd.Timestamp("2024-01-01 10:00")
    frame = pd.DataFrame({
        "customer_id": ["c1", "c1", "c2", "c2", "c2", "c3", "c3"],
        "item_id": ["A", "B", "A", "B", "B", "A", "B"],
        "timestamp": [t, t, t + pd.Timedelta(days=1), pd.NaT, pd.NaT, t - pd.Timedelta(hours=1),
                      t + pd.Timedelta(days=2)],
        "quantity": [1.0, np.nan, np.inf, 1.0, 1.0, -1.0, 1.0],
        "price": [2.0, np.nan, 1.0, 1.0, 1.0, 1.0, -np.inf],
    })
    path = tmp_path / "log.parquet"
    frame.to_parquet(path)
    log = load_purchase_log(path, max_bad_rows=0.9)
    assert counts(log.report) == {
        "rows_read": 7, "rows_kept": 2, "missing_customer": 0, "returns_cancellations": 1,
        "non_product_codes": 0, "duplicates": 1, "unparseable": 3, "after_until": 0,
    }
    assert log.report.unparseable_by_column == {"timestamp": 1, "quantity": 1, "price": 1, "item": 0}
    df = log.interactions
    assert df["item_id"].tolist() == ["A", "B"] and df["quantity"].tolist() == [1.0, 1.0]  # missing -> 1
    assert df["price"].iloc[0] == 2.0 and np.isnan(df["price"].iloc[1])
    assert df["order_id"].tolist() == [0, 0]
    assert pd.isna(df["country"]).all() and pd.api.types.is_string_dtype(df["country"])
