"""Purchase-log loader: cleaning counts per format, `--until`, the report, and the shipped samples (errors:
`test_data_errors.py`; input files: `test_data_files.py`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.data_helpers import GENERIC, RETAIL_HEADER, counts, write
from training.data import (
    ColumnNames,
    DataError,
    load_purchase_log,
    parse_until,
)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample" / "online_retail_sample.csv"
GENERIC_SAMPLE = ROOT / "data" / "sample" / "generic_sample.csv"
FULL = Path("/work/shared/datasets/online-retail/online_retail.csv.gz")



# ------------------------------------------------------------------------------------- generic format



def test_generic_loads_with_exact_schema(tmp_path: Path) -> None:
    log = load_purchase_log(write(tmp_path, GENERIC))
    df = log.interactions
    assert list(df.columns) == [
        "customer_id", "item_id", "timestamp", "quantity", "price", "order_id", "country"
    ]
    assert str(df["timestamp"].dtype) == "datetime64[ns]"
    assert df["quantity"].dtype == np.float64 and df["price"].dtype == np.float64
    assert pd.api.types.is_string_dtype(df["customer_id"]) and pd.api.types.is_string_dtype(df["item_id"])
    assert df["timestamp"].is_monotonic_increasing
    assert df["customer_id"].tolist() == ["c1", "c1", "c2", "c2", "c3"]
    assert df["quantity"].tolist() == [2.0, 1.0, 3.0, 1.0, 1.0]
    assert np.isnan(df["price"].iloc[1]) and df["price"].iloc[0] == 1.5
    # no order numbers in the generic format: one order per customer + timestamp
    orders = df["order_id"].tolist()
    assert orders[0] == orders[1] and len(set(orders)) == 4
    assert df["timestamp"].iloc[3] == pd.Timestamp("2024-01-03")
    assert df["country"].iloc[4] == "NA"  # Namibia, not a missing value
    assert pd.isna(df["country"].iloc[3])
    assert log.report.rows_read == 5 and log.report.rows_kept == 5
    items = log.items
    assert list(items.columns) == ["item_id", "title", "price", "category"]
    assert items["item_id"].tolist() == ["A", "B", "C"]
    assert items["title"].iloc[0] == "Apple" and pd.isna(items["title"].iloc[2])
    assert items["price"].iloc[0] == pytest.approx(1.6)  # median of 1.50 and 1.70
    assert items["price"].iloc[1] == pytest.approx(0.4)
    assert items["category"].tolist()[:2] == ["fruit", "fruit"]
    assert log.source == str(tmp_path / "log.csv")


def test_timestamp_offsets_become_naive_utc(tmp_path: Path) -> None:
    text = "customer_id,item_id,timestamp\nc1,A,2024-01-01T12:00:00+02:00\nc1,B,2024-01-01T11:00:00Z\n"
    df = load_purchase_log(write(tmp_path, text)).interactions
    assert df["timestamp"].tolist() == [pd.Timestamp("2024-01-01 10:00"), pd.Timestamp("2024-01-01 11:00")]
    assert df["timestamp"].dt.tz is None


def test_quantity_column_is_optional(tmp_path: Path) -> None:
    text = "customer_id,item_id,timestamp\nc1,A,2024-01-01\nc2,A,2024-01-02\n"
    log = load_purchase_log(write(tmp_path, text))
    assert log.interactions["quantity"].tolist() == [1.0, 1.0]
    assert log.interactions["price"].isna().all()
    assert log.items["title"].isna().all() and log.items["category"].isna().all()


def test_stable_sort_by_time(tmp_path: Path) -> None:
    text = ("customer_id,item_id,timestamp\n"
            "c1,Z,2024-01-02\nc1,Y,2024-01-01\nc1,X,2024-01-02\nc1,W,2024-01-01\n")
    df = load_purchase_log(write(tmp_path, text)).interactions
    assert df["item_id"].tolist() == ["Y", "W", "Z", "X"]


def test_each_cleaning_rule_counted_once(tmp_path: Path) -> None:
    text = "\n".join([
        "customer_id,item_id,timestamp,quantity,price",
        "c1,A,2024-01-01,1,2.0",        # kept
        ",A,2024-01-01,1,2.0",          # missing customer
        "  ,A,bad-date,1,2.0",          # missing customer (first rule wins over unparseable)
        "c1,A,2024-01-01,0,2.0",        # return (quantity 0)
        "c1,A,2024-01-01,-2,2.0",       # return (negative)
        "c1,A,not-a-date,-2,2.0",       # return (first rule wins over unparseable)
        "c1,A,2024-01-01,1,2.0",        # exact duplicate of line 2
        "c1,A,2024-01-01,1,2.0",        # exact duplicate of line 2
        "c2,B,2024-01-03,x,2.0",        # unparseable quantity
        "c2,B,2024-01-03,1,two",        # unparseable price
        "c2,B,,1,2.0",                  # unparseable (empty) timestamp
        "c2,,2024-01-03,1,2.0",         # unparseable (empty) item
        "c2,C,2024-01-04,,",            # kept: empty quantity -> 1, empty price -> NaN
        "c2,D,2024-01-04, , ",          # kept: blank quantity -> 1, blank price -> NaN
        "c3,B,2024-02-01,1,2.0",        # kept
    ]) + "\n"
    log = load_purchase_log(write(tmp_path, text), max_bad_rows=0.5)
    assert counts(log.report) == {
        "rows_read": 15, "rows_kept": 4, "missing_customer": 2, "returns_cancellations": 3,
        "non_product_codes": 0, "duplicates": 2, "unparseable": 4, "after_until": 0,
    }
    assert log.report.unparseable_by_column == {"timestamp": 1, "quantity": 1, "price": 1, "item": 1}
    r = log.report
    dropped = (r.missing_customer + r.returns_cancellations + r.non_product_codes + r.duplicates
               + r.unparseable + r.after_until)
    assert r.rows_kept + dropped == r.rows_read
    assert log.interactions["quantity"].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert log.interactions["price"].isna().sum() == 2


def test_item_title_is_most_frequent_then_most_recent(tmp_path: Path) -> None:
    text = ("customer_id,item_id,timestamp,title,price\n"
            "c1,A,2024-01-03,New name,1\nc1,A,2024-01-01,Old name,3\nc2,A,2024-01-02,Old name,5\n"
            "c1,B,2024-01-02,Later,0\nc2,B,2024-01-01,Earlier,-1\n")
    items = load_purchase_log(write(tmp_path, text)).items
    assert items["title"].tolist() == ["Old name", "Later"]
    assert items["price"].iloc[0] == 3.0 and np.isnan(items["price"].iloc[1])  # median of positive prices


def test_duplicates_compare_all_columns_as_written(tmp_path: Path) -> None:
    text = ("customer_id,item_id,timestamp,quantity,note\n"
            "c1,A,2024-01-01,1,x\nc1,A,2024-01-01,1,y\nc1,A,2024-01-01,1,x\nc1,A,2024-01-01,1.0,x\n")
    log = load_purchase_log(write(tmp_path, text))
    assert log.report.duplicates == 1 and log.report.rows_kept == 3


def test_column_renames(tmp_path: Path) -> None:
    text = "user,sku,when,qty,amount,name,dept,land\nu1,S1,2024-05-01 12:00,2,3.5,Mug,home,DE\n"
    names = ColumnNames(customer="user", item="sku", time="when", quantity="qty", price="amount",
                        title="name", category="dept", country="land")
    log = load_purchase_log(write(tmp_path, text), columns=names)
    row = log.interactions.iloc[0]
    assert (row["customer_id"], row["item_id"], row["quantity"], row["price"], row["country"]) == \
        ("u1", "S1", 2.0, 3.5, "DE")
    assert log.items.iloc[0].to_dict() == {"item_id": "S1", "title": "Mug", "price": 3.5, "category": "home"}


def test_renamed_optional_column_must_exist(tmp_path: Path) -> None:
    path = write(tmp_path, "customer_id,item_id,timestamp\nc1,A,2024-01-01\n")
    expected = (r"column 'amount' not found; columns found: 'customer_id', 'item_id', 'timestamp' "
                r"\(use --price-col")
    with pytest.raises(DataError, match=expected):
        load_purchase_log(path, columns=ColumnNames(price="amount"))


def test_excel_float_customer_ids_are_normalized(tmp_path: Path) -> None:
    text = "customer_id,item_id,timestamp\n17850.0,A,2024-01-01\n17850,B,2024-01-02\n12.5,C,2024-01-03\n"
    df = load_purchase_log(write(tmp_path, text)).interactions
    assert df["customer_id"].tolist() == ["17850", "17850", "12.5"]


def test_semicolon_and_cp1252(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    text = "customer_id;item_id;timestamp;title\nc1;A;2024-01-01;Caf\xe9 \xa3 mug\n"
    path.write_bytes(text.encode("cp1252"))
    log = load_purchase_log(path)
    assert log.items["title"].tolist() == ["Café £ mug"]


# ------------------------------------------------------------------------------------------- --until


def test_until_keeps_events_strictly_before(tmp_path: Path) -> None:
    text = ("customer_id,item_id,timestamp\n"
            "c1,A,2011-12-08T23:59:59\nc1,B,2011-12-09T00:00:00\nc1,C,2011-12-09T10:00:00\n"
            "c2,A,2011-12-01T00:00:00\n")
    log = load_purchase_log(write(tmp_path, text), until=parse_until("2011-12-09"))
    assert log.report.after_until == 2 and log.report.rows_kept == 2
    assert sorted(log.interactions["item_id"]) == ["A", "A"]
    log = load_purchase_log(write(tmp_path, text), until=parse_until("2011-12-09T10:00"))
    assert log.report.after_until == 1 and log.report.rows_kept == 3
    aware = datetime(2011, 12, 9, 11, 0, tzinfo=UTC)
    assert load_purchase_log(write(tmp_path, text), until=aware).report.after_until == 0


def test_until_is_the_last_rule(tmp_path: Path) -> None:
    text = "customer_id,item_id,timestamp,quantity\nc1,A,2024-02-01,-1\n,A,2024-02-01,1\nc1,A,2024-01-01,1\n"
    log = load_purchase_log(write(tmp_path, text), until=datetime(2024, 1, 15))
    r = log.report
    assert (r.returns_cancellations, r.missing_customer, r.after_until) == (1, 1, 0)


def test_everything_after_until_is_no_usable_row(tmp_path: Path) -> None:
    path = write(tmp_path, "customer_id,item_id,timestamp\nc1,A,2024-02-01\n")
    with pytest.raises(DataError, match=r"no usable rows left after cleaning \(1 read, 1 at/after --until\)"):
        load_purchase_log(path, until=datetime(2024, 1, 1))


@pytest.mark.parametrize(("text", "expected"), [
    ("2011-12-09", datetime(2011, 12, 9)),
    ("2011-12-09T08:30", datetime(2011, 12, 9, 8, 30)),
    (" 2011-01-31 ", datetime(2011, 1, 31)),
])
def test_parse_until(text: str, expected: datetime) -> None:
    assert parse_until(text) == expected


@pytest.mark.parametrize("text", ["2011-12-9", "2011-13-01", "2011-02-30", "09/12/2011", "2011-12-09 08:30",
                                  "2011-12-09T08:30:00", "yesterday", ""])
def test_parse_until_rejects(text: str) -> None:
    with pytest.raises(DataError, match="expected YYYY-MM-DD or YYYY-MM-DDTHH:MM"):
        parse_until(text)


# ------------------------------------------------------------------------------------ online-retail

RETAIL = "\n".join([
    RETAIL_HEADER,
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850,United Kingdom",
    "536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850,United Kingdom",
    "536365,POST,POSTAGE,1,2010-12-01 08:26:00,18.00,17850,United Kingdom",
    "536366,85123a,WHITE HANGING HEART T-LIGHT HOLDER ,2,2010-12-02 09:00:00,2.95,17850.0,United Kingdom",
    "536367,22633,HAND WARMER UNION JACK,6,2010-12-01 09:00:00,1.85,,United Kingdom",
    "C536379,D,Discount,-1,2010-12-01 09:41:00,27.50,14527,United Kingdom",
    "C536380,22633,HAND WARMER UNION JACK,-2,2010-12-01 09:42:00,1.85,13047,France",
    "536381,22633,HAND WARMER UNION JACK,-5,2010-12-01 09:43:00,1.85,13047,France",
    "536382,DOT,DOTCOM POSTAGE,1,2010-12-03 10:00:00,5.00,13047,France",
    "536383,gift_0001_20,Dotcomgiftshop Gift Voucher £20.00,1,2010-12-03 10:00:00,17.02,13047,France",
    "536384,M,Manual,1,2010-12-03 10:00:00,0.85,13047,France",
    "536385,BANK CHARGES,Bank Charges,1,2010-12-03 10:00:00,15.00,13047,France",
    "536386,C2,CARRIAGE,1,2010-12-03 10:00:00,50.00,13047,France",
    "536387,22633,HAND WARMER UNION JACK,6,2010-12-04 11:00:00,1.65,13047,France",
    "536387,22633,HAND WARMER UNION JACK,6,2010-12-04 11:00:00,1.65,13047,France",
    "536388,22632,,12,2010-12-05 12:00:00,1.85,13047,France",
]) + "\n"


def test_online_retail_cleaning(tmp_path: Path) -> None:
    log = load_purchase_log(write(tmp_path, RETAIL), fmt="online-retail")
    assert counts(log.report) == {
        "rows_read": 16, "rows_kept": 5, "missing_customer": 1, "returns_cancellations": 3,
        "non_product_codes": 6, "duplicates": 1, "unparseable": 0, "after_until": 0,
    }
    df = log.interactions
    assert df["customer_id"].tolist() == ["17850", "17850", "17850", "13047", "13047"]
    assert df["item_id"].tolist() == ["85123A", "71053", "85123A", "22633", "22632"]
    assert df["order_id"].tolist() == ["536365", "536365", "536366", "536387", "536388"]
    assert df["country"].tolist()[-1] == "France"
    items = log.items.set_index("item_id")
    assert items.loc["85123A", "title"] == "WHITE HANGING HEART T-LIGHT HOLDER"  # stripped, most frequent
    assert items.loc["85123A", "price"] == pytest.approx(2.75)  # median of 2.55 and 2.95
    assert pd.isna(items.loc["22632", "title"])
    assert items["category"].isna().all()


def test_online_retail_ii_spelling_and_us_dates(tmp_path: Path) -> None:
    text = ("Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country\n"
            "489434,85048,15CM CHRISTMAS GLASS BALL 20 LIGHTS,12,12/1/2009 7:45,6.95,13085.0,United Kingdom\n"
            "489434,79323P,PINK CHERRY LIGHTS,12,12/13/2009 17:05,6.75,13085.0,United Kingdom\n"
            "C489449,22087,PAPER BUNTING WHITE LACE,-12,2009-12-01 10:33:00,2.95,16321.0,Australia\n")
    log = load_purchase_log(write(tmp_path, text), fmt="online-retail")
    df = log.interactions
    assert df["customer_id"].tolist() == ["13085", "13085"]
    assert df["timestamp"].tolist() == [pd.Timestamp("2009-12-01 07:45"), pd.Timestamp("2009-12-13 17:05")]
    assert df["price"].tolist() == [6.95, 6.75]
    assert log.report.returns_cancellations == 1


def test_online_retail_missing_column_lists_found(tmp_path: Path) -> None:
    path = write(tmp_path, "InvoiceNo,StockCode,Quantity,InvoiceDate\n1,A,1,2011-01-01\n")
    with pytest.raises(DataError) as err:
        load_purchase_log(path, fmt="online-retail")
    assert str(err.value) == (
        f"{path}: required column 'CustomerID' (online-retail format) not found; "
        "columns found: 'InvoiceNo', 'StockCode', 'Quantity', 'InvoiceDate'"
    )


def test_generic_format_on_retail_file_suggests_format(tmp_path: Path) -> None:
    expected = (r"required column 'customer_id' not found; columns found: 'InvoiceNo', "
                r".*use --format online-retail")
    with pytest.raises(DataError, match=expected):
        load_purchase_log(write(tmp_path, RETAIL))


# ------------------------------------------------------------------------------------------ report


def test_report_format_and_dict(tmp_path: Path) -> None:
    log = load_purchase_log(write(tmp_path, RETAIL), fmt="online-retail")
    text = log.report.format()
    assert text.splitlines()[0] == "data quality:"
    assert "  rows read              16 100.0%" in text
    assert "  non-product codes       6  37.5%" in text
    assert text.splitlines()[-1] == "  rows kept               5  31.2%"
    assert json.loads(json.dumps(log.report.to_dict()))["duplicates"] == 1


# ------------------------------------------------------------------------------------- shipped data


def test_online_retail_sample() -> None:
    log = load_purchase_log(SAMPLE, fmt="online-retail")
    assert counts(log.report) == {
        "rows_read": 13071, "rows_kept": 12298, "missing_customer": 200, "returns_cancellations": 391,
        "non_product_codes": 143, "duplicates": 39, "unparseable": 0, "after_until": 0,
    }
    df = log.interactions
    assert df["customer_id"].nunique() == 300
    assert df["item_id"].nunique() == 2220 and len(log.items) == 2220
    assert df["order_id"].nunique() == 1253
    assert df["timestamp"].min() == pd.Timestamp("2010-12-01 09:41")
    assert df["timestamp"].max() == pd.Timestamp("2011-12-09 12:09")
    # a 30-day holdout has truth for the 120 customers drawn among recent buyers
    recent = df[df["timestamp"] >= pd.Timestamp("2011-11-09")]
    assert recent["customer_id"].nunique() >= 120
    assert SAMPLE.stat().st_size < 1_500_000
    assert log.fingerprint == "d4b0711cd8930c3d3a9e5cf1b5d74fc444c82256e5dca5644a5e0b2a9b074326"


def test_online_retail_sample_with_until() -> None:
    log = load_purchase_log(SAMPLE, fmt="online-retail", until=parse_until("2011-11-09"))
    assert log.interactions["timestamp"].max() < pd.Timestamp("2011-11-09")
    assert log.report.after_until + log.report.rows_kept == 12298


def test_generic_sample() -> None:
    log = load_purchase_log(GENERIC_SAMPLE)
    assert log.report.rows_read == 30 and log.report.rows_kept == 30
    assert log.interactions["customer_id"].nunique() == 6 and len(log.items) == 10
    assert log.items["category"].notna().all()
    assert set(log.interactions["country"]) == {"United Kingdom", "France"}


@pytest.mark.slow
@pytest.mark.skipif(not FULL.exists(), reason="full Online Retail file not available")
def test_full_online_retail_file() -> None:
    log = load_purchase_log(FULL, fmt="online-retail")
    assert counts(log.report) == {
        "rows_read": 541909, "rows_kept": 391183, "missing_customer": 135080, "returns_cancellations": 8905,
        "non_product_codes": 1554, "duplicates": 5187, "unparseable": 0, "after_until": 0,
    }
    assert log.interactions["customer_id"].nunique() == 4335
