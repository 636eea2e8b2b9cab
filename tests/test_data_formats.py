"""Reading real files with `--format generic`: time formats, baskets, ids as written, segments, bad input."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tailor.cli import main
from tailor.parser import build_parser
from tests.data_helpers import write
from training.data import ColumnNames, DataError, load_purchase_log
from training.matrix import build_history

TA_FENG = Path("/work/shared/datasets/ta-feng/ta_feng.csv.gz")


def log_of(times: list[str], header: str = "customer_id,item_id,timestamp") -> str:
    return header + "\n" + "".join(f"c{i % 3},i{i % 5},{t}\n" for i, t in enumerate(times))


def timestamps(path: Path, **kwargs) -> list[pd.Timestamp]:
    return sorted(load_purchase_log(path, **kwargs).interactions["timestamp"].tolist())


def known_flags() -> set[str]:
    flags: set[str] = set()
    for action in build_parser()._subparsers._group_actions[0].choices["train"]._actions:
        flags.update(action.option_strings)
    return flags


def assert_flags_exist(message: str) -> None:
    """An error may only point to flags `tailor train` has."""
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", message))
    assert named <= known_flags(), named - known_flags()


# -------------------------------------------------------------------------------------- --time-format

@pytest.mark.parametrize(("fmt", "values", "expected"), [
    ("%d-%m-%Y", ["31-12-2023", "01-02-2024"], ["2023-12-31", "2024-02-01"]),
    ("%m/%d/%Y", ["12/31/2023", "2/1/2024"], ["2023-12-31", "2024-02-01"]),
    ("%d.%m.%Y %H:%M", ["31.12.2023 17:05", "01.02.2024 08:00"], ["2023-12-31 17:05", "2024-02-01 08:00"]),
    ("%Y%m%d", ["20231231", "20240201"], ["2023-12-31", "2024-02-01"]),
    ("%d/%m/%Y %H:%M:%S%z", ["31/12/2023 17:05:00+0100", "01/02/2024 08:00:00+0000"],
     ["2023-12-31 16:05", "2024-02-01 08:00"]),
])
def test_strftime_time_format(tmp_path: Path, fmt: str, values: list[str], expected: list[str]) -> None:
    path = write(tmp_path, log_of(values))
    assert timestamps(path, time_format=fmt) == [pd.Timestamp(e) for e in expected]


def test_explicit_format_is_strict_and_names_file_column_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, log_of(["31-12-2023", "2023-12-31", "01-02-2024"]))
    with pytest.raises(DataError) as err:
        load_purchase_log(path, time_format="%d-%m-%Y")  # ISO is not tried when a format is given
    message = str(err.value)
    assert message.startswith(f"{path}: 1 of 3 rows (33.3%) have an unparseable timestamp in column "
                              "'timestamp', first at line 3: '2023-12-31'")
    assert "--time-format '%d-%m-%Y'" in message
    assert_flags_exist(message)


@pytest.mark.parametrize(("fmt", "text"), [
    ("epoch", ["1704103200", "1704103200.5", "0"]),
    ("epoch-ms", ["1704103200000", "1704103200500", "0"]),
])
def test_epoch_text(tmp_path: Path, fmt: str, text: list[str]) -> None:
    path = write(tmp_path, log_of(text))
    assert timestamps(path, time_format=fmt) == [
        pd.Timestamp("1970-01-01"), pd.Timestamp("2024-01-01 10:00"), pd.Timestamp("2024-01-01 10:00:00.5")]


@pytest.mark.parametrize(("fmt", "scale"), [("epoch", 1), ("epoch-ms", 1000)])
def test_epoch_typed_parquet(tmp_path: Path, fmt: str, scale: int) -> None:
    frame = pd.DataFrame({"customer_id": ["a", "b"], "item_id": ["x", "y"],
                          "timestamp": np.array([1704103200, 1704189600], dtype=np.int64) * scale})
    path = tmp_path / "log.parquet"
    frame.to_parquet(path)
    assert timestamps(path, time_format=fmt) == [pd.Timestamp("2024-01-01 10:00"), pd.Timestamp("2024-01-02 10:00")]


def test_epoch_out_of_range_and_text_are_bad_values(tmp_path: Path) -> None:
    path = write(tmp_path, log_of(["1704103200", "1e30", "soon", "1704103201"]))
    with pytest.raises(DataError, match=r"2 of 4 rows .* first at line 3: '1e30' — wrong --time-col, or does "
                                        r"--time-format 'epoch' not match\?"):
        load_purchase_log(path, time_format="epoch")


def test_unix_times_without_format_suggest_epoch(tmp_path: Path) -> None:
    path = write(tmp_path, log_of(["1704103200", "1704189600"]))
    with pytest.raises(DataError) as err:
        load_purchase_log(path)
    assert "first at line 2: '1704103200'" in str(err.value)
    assert "--time-format epoch or --time-format epoch-ms" in str(err.value)
    assert_flags_exist(str(err.value))


@pytest.mark.parametrize("fmt", ["%Q-%m", "dd/mm/yyyy", ""])
def test_invalid_time_format(tmp_path: Path, fmt: str) -> None:
    path = write(tmp_path, log_of(["2024-01-01"]))
    with pytest.raises(DataError, match=f"invalid --time-format {re.escape(repr(fmt))}"):
        load_purchase_log(path, time_format=fmt)


def test_day_first_detected(tmp_path: Path) -> None:
    path = write(tmp_path, log_of(["03/04/2024", "25/12/2023 17:05", "1/2/2024"]))
    assert timestamps(path) == [pd.Timestamp("2023-12-25 17:05"), pd.Timestamp("2024-02-01"),
                                pd.Timestamp("2024-04-03")]


def test_month_first_detected(tmp_path: Path) -> None:
    path = write(tmp_path, log_of(["11/1/2000", "12/13/2000", "1/2/2001 08:30:15"]))
    assert timestamps(path) == [pd.Timestamp("2000-11-01"), pd.Timestamp("2000-12-13"),
                                pd.Timestamp("2001-01-02 08:30:15")]


def test_detection_with_dashes_dots_and_short_years(tmp_path: Path) -> None:
    assert timestamps(write(tmp_path, log_of(["13-01-24", "02-03-24"]))) == [
        pd.Timestamp("2024-01-13"), pd.Timestamp("2024-03-02")]
    assert timestamps(write(tmp_path, log_of(["13.01.2024", "02.03.2024"]))) == [
        pd.Timestamp("2024-01-13"), pd.Timestamp("2024-03-02")]


def test_ambiguous_dates_name_both_formats_and_the_flag(tmp_path: Path) -> None:
    path = write(tmp_path, log_of(["2024-01-01", "03/04/2024", "05/06/2024", "07/08/2024"]))
    with pytest.raises(DataError) as err:
        load_purchase_log(path)
    assert str(err.value) == (
        f"{path}: dates in column 'timestamp' read as day/month and as month/day (no day above 12), first at "
        "line 3: '03/04/2024' — give --time-format '%d/%m/%Y' or --time-format '%m/%d/%Y'")
    assert_flags_exist(str(err.value))
    # the flag it names resolves it, either way
    assert timestamps(path, time_format="%d/%m/%Y", max_bad_rows=0.5)[0] == pd.Timestamp("2024-04-03")
    assert timestamps(path, time_format="%m/%d/%Y", max_bad_rows=0.5)[0] == pd.Timestamp("2024-03-04")


def test_ambiguous_dates_with_time_of_day(tmp_path: Path) -> None:
    path = write(tmp_path, log_of(["03/04/2024 10:00", "05/06/2024 11:30"]))
    with pytest.raises(DataError, match=re.escape("--time-format '%d/%m/%Y %H:%M' or --time-format "
                                                  "'%m/%d/%Y %H:%M'")):
        load_purchase_log(path)


def test_ambiguous_dates_through_the_cli_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, log_of(["03/04/2024", "05/06/2024"]))
    assert main(["--quiet", "train", "--data", str(path), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"tailor: error: {path}: ")
    assert "'timestamp'" in err[0] and "line 2" in err[0] and "--time-format '%m/%d/%Y'" in err[0]
    assert main(["--quiet", "train", "--data", str(path), "--time-format", "%Q", "--out", "x"]) == 2
    assert "invalid --time-format '%Q'" in capsys.readouterr().err


def test_mostly_iso_column_keeps_odd_values_as_bad_rows(tmp_path: Path) -> None:
    times = ["2024-01-01T10:00"] * 198 + ["03/04/2024", "x"]
    log = load_purchase_log(write(tmp_path, log_of(times)))
    assert log.report.unparseable == 2 and log.report.rows_kept == 198


def test_non_iso_layout_without_format_points_to_time_format(tmp_path: Path) -> None:
    path = write(tmp_path, log_of(["Jan 5 2024", "Feb 6 2024"]))
    with pytest.raises(DataError) as err:
        load_purchase_log(path)
    assert "first at line 2: 'Jan 5 2024'" in str(err.value) and "--time-format" in str(err.value)
    assert_flags_exist(str(err.value))
    assert timestamps(path, time_format="%b %d %Y") == [pd.Timestamp("2024-01-05"), pd.Timestamp("2024-02-06")]


# ------------------------------------------------------------------------------------------ baskets

def test_without_basket_column_a_basket_is_a_customer_day(tmp_path: Path) -> None:
    text = ("customer_id,item_id,timestamp\n"
            "c1,A,2024-01-01T09:00\nc1,B,2024-01-01T18:30\nc2,A,2024-01-01T09:00\n"
            "c1,C,2024-01-02T00:00\nc1,A,2024-01-01T23:59:59\n")
    df = load_purchase_log(write(tmp_path, text)).interactions
    keys = zip(df["customer_id"], df["item_id"], df["timestamp"].dt.day, strict=True)
    baskets = dict(zip(keys, df["order_id"], strict=True))
    assert baskets[("c1", "A", 1)] == baskets[("c1", "B", 1)] != baskets[("c2", "A", 1)]
    assert baskets[("c1", "C", 2)] not in {baskets[("c1", "A", 1)], baskets[("c2", "A", 1)]}
    assert df["order_id"].nunique() == 3


def test_basket_column(tmp_path: Path) -> None:
    text = ("customer_id,item_id,timestamp,invoice\n"
            "c1,A,2024-01-01T09:00,INV-1\nc1,B,2024-01-01T09:00,INV-2\nc1,C,2024-01-01T10:00,C-3\n"
            "c2,A,2024-01-02T09:00,\n")
    log = load_purchase_log(write(tmp_path, text), columns=ColumnNames(basket="invoice"))
    df = log.interactions
    assert df["order_id"].tolist()[:3] == ["INV-1", "INV-2", "C-3"]  # "C..." is no cancellation here
    assert df["order_id"].iloc[3].startswith("order-")  # a missing basket id: the customer's day
    assert log.report.returns_cancellations == 0


def test_basket_column_must_exist_and_is_generic_only(tmp_path: Path) -> None:
    path = write(tmp_path, "customer_id,item_id,timestamp\nc1,A,2024-01-01\n")
    with pytest.raises(DataError, match=r"column 'invoice' \(--basket-col\) not found; columns found: "):
        load_purchase_log(path, columns=ColumnNames(basket="invoice"))
    with pytest.raises(DataError, match="--basket-col applies to --format generic only"):
        load_purchase_log(path, fmt="online-retail", columns=ColumnNames(basket="invoice"))


def test_repeated_rows_without_basket_or_quantity_are_units(tmp_path: Path) -> None:
    text = "customer_id,item_id,timestamp\nc1,A,2024-01-01\nc1,A,2024-01-01\nc1,A,2024-01-01\nc1,B,2024-01-01\n"
    log = load_purchase_log(write(tmp_path, text))
    assert log.report.duplicates == 0 and log.report.rows_kept == 4
    history, _, items = build_history(log.interactions)
    a = list(items).index("A")
    assert history.quantity[0, a] == 3.0 and history.orders[0, a] == 1.0  # three units, one basket
    # with a quantity column (or a basket column) the same repeat is an exact duplicate, as before
    text_q = "customer_id,item_id,timestamp,quantity\nc1,A,2024-01-01,1\nc1,A,2024-01-01,1\n"
    assert load_purchase_log(write(tmp_path, text_q)).report.duplicates == 1
    text_b = "customer_id,item_id,timestamp,order\nc1,A,2024-01-01,o1\nc1,A,2024-01-01,o1\n"
    assert load_purchase_log(write(tmp_path, text_b), columns=ColumnNames(basket="order")).report.duplicates == 1


# ------------------------------------------------------------------------------------ ids and headers

def test_leading_zeros_are_kept(tmp_path: Path) -> None:
    text = "customer_id,item_id,timestamp\n00418683,0001,2024-01-01\n418683,1,2024-01-02\n00418683,01,2024-01-03\n"
    log = load_purchase_log(write(tmp_path, text))
    assert log.interactions["customer_id"].tolist() == ["00418683", "418683", "00418683"]
    assert log.interactions["item_id"].tolist() == ["0001", "1", "01"]
    _, customers, items = build_history(log.interactions)
    assert list(customers) == ["00418683", "418683"] and list(items) == ["0001", "01", "1"]


@pytest.mark.parametrize("packed", [False, True])
def test_bom_prefixed_quoted_header(tmp_path: Path, packed: bool) -> None:
    text = '"TRANSACTION_DT","CUSTOMER_ID","PRODUCT_ID"\r\n"11/1/2000","01104905","4710199010372"\r\n' \
           '"11/13/2000","00418683","4710857472535"\r\n'
    raw = b"\xef\xbb\xbf" + text.encode()
    path = tmp_path / "bom.csv"
    path.write_bytes(gzip.compress(raw) if packed else raw)
    log = load_purchase_log(path, columns=ColumnNames(customer="CUSTOMER_ID", item="PRODUCT_ID",
                                                      time="TRANSACTION_DT"))
    assert log.interactions["customer_id"].tolist() == ["01104905", "00418683"]
    assert log.interactions["timestamp"].tolist() == [pd.Timestamp("2000-11-01"), pd.Timestamp("2000-11-13")]


def test_bom_header_cp1252_file(tmp_path: Path) -> None:
    text = "customer_id,item_id,timestamp,title\nc1,A,2024-01-01,Caf\xe9\n"
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("cp1252"))
    log = load_purchase_log(path)
    assert log.interactions["customer_id"].tolist() == ["c1"] and log.items["title"].tolist() == ["Café"]


def test_online_retail_ii_test_codes_are_non_products(tmp_path: Path) -> None:
    text = ("Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country\n"
            "489434,85048,GLASS BALL,12,2009-12-01 07:45:00,6.95,13085,United Kingdom\n"
            "489435,TEST001,This is a test product.,5,2009-12-01 08:00:00,4.50,12346,United Kingdom\n"
            "489436,test002,This is a test product.,1,2009-12-01 08:00:00,1.00,12346,United Kingdom\n"
            "489437,TEST,not a TEST code,1,2009-12-01 08:00:00,1.00,12346,United Kingdom\n"
            "489438,22TEST1,a product,1,2009-12-01 08:00:00,1.00,12346,United Kingdom\n")
    log = load_purchase_log(write(tmp_path, text), fmt="online-retail")
    assert log.report.non_product_codes == 3  # TEST001, test002 and the word TEST (no digit)
    assert sorted(log.interactions["item_id"]) == ["22TEST1", "85048"]


# ------------------------------------------------------------------------------------------ segments

SEGMENTED = ("customer_id,item_id,timestamp,age,area\n"
             "c1,A,2024-01-01,25-29,115\nc1,B,2024-01-02,25-29,115\nc2,A,2024-01-01,>65,Others\n"
             "c3,C,2024-01-03,,115\n")


def test_segment_columns_reach_the_interactions(tmp_path: Path) -> None:
    log = load_purchase_log(write(tmp_path, SEGMENTED), columns=ColumnNames(segments=("age", "area")))
    df = log.interactions
    assert df["segment:age"].tolist()[:3] == ["25-29", ">65", "25-29"] and pd.isna(df["segment:age"].iloc[3])
    assert df["segment:area"].tolist() == ["115", "Others", "115", "115"]


def test_segment_column_errors(tmp_path: Path) -> None:
    path = write(tmp_path, SEGMENTED)
    with pytest.raises(DataError, match=r"column 'AGE_GROUP' \(--segment-col\) not found; columns found: "):
        load_purchase_log(path, columns=ColumnNames(segments=("AGE_GROUP",)))
    with pytest.raises(DataError, match="--segment-col 'age' given twice"):
        load_purchase_log(path, columns=ColumnNames(segments=("age", "age")))
    with pytest.raises(DataError, match="--segment-col 'country' is the country column"):
        load_purchase_log(path, columns=ColumnNames(segments=("country",)))


# ------------------------------------------------------------------------------------ the real log

@pytest.mark.slow
@pytest.mark.skipif(not TA_FENG.exists(), reason="Ta Feng file not available")
def test_full_ta_feng_file() -> None:
    names = ColumnNames(customer="CUSTOMER_ID", item="PRODUCT_ID", time="TRANSACTION_DT", quantity="AMOUNT",
                        category="PRODUCT_SUBCLASS", segments=("AGE_GROUP", "PIN_CODE"))
    log = load_purchase_log(TA_FENG, columns=names)  # m/d/Y detected: many days are above 12
    df = log.interactions
    assert log.report.rows_read == log.report.rows_kept == 817_741
    assert df["timestamp"].min() == pd.Timestamp("2000-11-01") and df["timestamp"].max() == pd.Timestamp("2001-02-28")
    assert df["customer_id"].nunique() == 32_266 and df["item_id"].nunique() == 23_812
    assert df["customer_id"].str.startswith("0").any() and (df["customer_id"].str.len() == 8).all()
    assert set(df["segment:AGE_GROUP"].dropna()) >= {"<25", ">65"}
