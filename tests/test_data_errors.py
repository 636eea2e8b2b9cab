"""Purchase-log loader errors: each names the file and, where it can, the column, line and value at fault."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from tests.data_helpers import GENERIC, RETAIL_HEADER, write
from training.data import FORMATS, ColumnNames, DataError, load_purchase_log


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError) as err:
        load_purchase_log(path)
    assert str(err.value) == f"{path}: file not found"


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is a directory"):
        load_purchase_log(tmp_path)


@pytest.mark.parametrize(("payload", "expected"), [
    (bytes(range(256)) * 8, "binary file, not CSV text"),
    (b"PK\x03\x04" + b"\x00" * 100, "zip archive"),
    (gzip.compress(b"\x00\x01\x02\x03binary" * 100, mtime=0), "binary file (inside gzip)"),
    ("customer_id,item_id,timestamp\n".encode("utf-16"), "UTF-16"),
], ids=["binary", "zip", "gzip-binary", "utf-16"])  # explicit ids: gzip bytes embed a time stamp (xdist)
def test_binary_file(tmp_path: Path, payload: bytes, expected: str) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(payload)
    with pytest.raises(DataError) as err:
        load_purchase_log(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message


def test_corrupt_gzip_and_parquet(tmp_path: Path) -> None:
    gz = tmp_path / "broken.csv.gz"
    gz.write_bytes(gzip.compress(GENERIC.encode() * 50)[:120])
    with pytest.raises(DataError, match=f"^{gz}: "):
        load_purchase_log(gz)
    pq = tmp_path / "broken.parquet"
    pq.write_bytes(b"PAR1" + b"garbage" * 20)
    with pytest.raises(DataError, match=f"^{pq}: unreadable Parquet file"):
        load_purchase_log(pq)


def test_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_purchase_log(write(tmp_path, GENERIC), fmt="excel")
    assert str(err.value) == "unknown format 'excel'; valid formats: generic, online-retail"
    assert FORMATS == ("generic", "online-retail")


def test_missing_required_column_lists_found_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "customer_id,sku,timestamp\nc1,A,2024-01-01\n")
    with pytest.raises(DataError) as err:
        load_purchase_log(path)
    assert str(err.value) == (f"{path}: required column 'item_id' not found; columns found: 'customer_id', "
                              "'sku', 'timestamp' (use --item-col to name it)")


@pytest.mark.parametrize(("text", "expected"), [
    ("", "file is empty"),
    ("\n\n  \n", "file is empty"),
    ("customer_id,item_id,timestamp\n", "no data rows (header only)"),
])
def test_empty_inputs(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(DataError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load_purchase_log(write(tmp_path, text))


def test_no_usable_row(tmp_path: Path) -> None:
    path = write(tmp_path, "customer_id,item_id,timestamp,quantity\n,A,2024-01-01,1\nc1,A,2024-01-01,-1\n")
    with pytest.raises(DataError) as err:
        load_purchase_log(path)
    assert str(err.value) == (f"{path}: no usable rows left after cleaning "
                              "(2 read, 1 without customer, 1 returns/cancellations)")


def test_malformed_csv_is_wrapped(tmp_path: Path) -> None:
    path = write(tmp_path, "customer_id,item_id,timestamp\nc1,A,2024-01-01\nc1,A,2024-01-01,extra,fields\n")
    with pytest.raises(DataError, match=f"^{path}: not a readable CSV file \\(line 3\\): .*Expected 3 columns, got 5"):
        load_purchase_log(path)


@pytest.mark.parametrize(("text", "line"), [
    ('customer_id,item_id,timestamp\nc1,A,2024-01-01\n\nc2,B,2024-01-02\nc3,"unclosed,2024-01-03\n', 5),
    ('customer_id,item_id,timestamp\nc1,"A\nB",2024-01-01\nc2,B\n', 4),  # a quoted newline is one record
], ids=["unclosed-quote-after-a-blank-line", "short-row-after-a-quoted-newline"])
def test_malformed_csv_names_the_line(tmp_path: Path, text: str, line: int) -> None:
    for path in (write(tmp_path, text), tmp_path / "log.csv.gz"):
        if path.suffix == ".gz":
            path.write_bytes(gzip.compress(text.encode()))
        with pytest.raises(DataError, match=f"^{path}: not a readable CSV file \\(line {line}\\): "):
            load_purchase_log(path)


def bad_rows_file(tmp_path: Path, bad: dict[int, str], n: int = 200) -> Path:
    lines = ["customer_id,item_id,timestamp"]
    for i in range(n):
        lines.append(f"c{i},i{i % 11},{bad.get(i, '2024-01-01T10:00')}")
    return write(tmp_path, "\n".join(lines) + "\n", "data.csv")


def test_too_many_bad_rows_names_column_line_and_value(tmp_path: Path) -> None:
    path = bad_rows_file(tmp_path, {1: "not-a-date", 50: "31/12/2024", 60: "x"})
    with pytest.raises(DataError) as err:
        load_purchase_log(path)
    assert str(err.value) == (
        f"{path}: 3 of 200 rows (1.5%) have an unparseable timestamp in column 'timestamp', "
        "first at line 3: 'not-a-date' — wrong --time-col, or rows in a date layout other than ISO 8601 "
        "(give it with --time-format)? (limit 1%)"
    )


def retail_file(tmp_path: Path, bad_quantity: str = "6", bad_date: str = "12/1/2010 8:26") -> Path:
    rows = [RETAIL_HEADER] + [f"5363{i:02d},85123A,HEART,{bad_quantity if i == 3 else 6},"
                              f"{bad_date if i == 3 else '12/1/2010 8:26'},2.55,17850,UK" for i in range(20)]
    return write(tmp_path, "\n".join(rows) + "\n", "retail.csv")


@pytest.mark.parametrize(("bad", "hint"), [
    ({"bad_quantity": "lots"}, "not the Online Retail layout? Read other files with --format generic and "
                               "--quantity-col"),
    ({"bad_date": "yesterday"}, "give the layout with --time-format (strftime, e.g. '%d.%m.%Y %H:%M')?"),
    ({"bad_date": "1291191960"}, "— Unix times need --time-format epoch or --time-format epoch-ms"),
])
def test_online_retail_hints_name_only_flags_that_apply_to_it(bad: dict[str, str], hint: str,
                                                              tmp_path: Path) -> None:
    """The Online Retail layout has fixed column names: no hint may suggest a --*-col flag it ignores."""
    with pytest.raises(DataError) as err:
        load_purchase_log(retail_file(tmp_path, **bad), fmt="online-retail")
    message = str(err.value)
    assert "first at line 5" in message and hint in message, message
    assert "wrong --" not in message and "--time-col" not in message, message


def test_bad_rows_under_the_limit_are_dropped(tmp_path: Path) -> None:
    log = load_purchase_log(bad_rows_file(tmp_path, {1: "not-a-date", 50: "x"}))  # 2 of 200 = 1%
    assert log.report.unparseable == 2 and log.report.rows_kept == 198
    assert log.report.unparseable_by_column["timestamp"] == 2
    with pytest.raises(DataError, match="2 of 200 rows"):
        load_purchase_log(bad_rows_file(tmp_path, {1: "not-a-date", 50: "x"}), max_bad_rows=0.005)


def test_wrong_time_column_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "customer_id,item_id,timestamp,when\nc1,A,2024-01-01,yes\nc2,B,2024-01-02,no\n")
    with pytest.raises(DataError, match=r"2 of 2 rows \(100.0%\) .* column 'when', first at line 2: 'yes'"):
        load_purchase_log(path, columns=ColumnNames(time="when"))


def test_bad_line_numbers_count_physical_lines(tmp_path: Path) -> None:
    text = ('customer_id,item_id,timestamp,quantity,title\n'
            'c1,A,2024-01-01,1,"two\nline title"\n'
            '\n'
            'c2,B,2024-01-01,lots,x\n')
    with pytest.raises(DataError, match=r"unparseable quantity in column 'quantity', first at line 5: 'lots' "
                                        r"— wrong --quantity-col\?"):
        load_purchase_log(write(tmp_path, text))


def test_bad_max_bad_rows(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="between 0 and 1"):
        load_purchase_log(write(tmp_path, GENERIC), max_bad_rows=5)
