"""Read a purchase log (CSV, gzip-compressed CSV or Parquet) into clean, typed interactions.

Two layouts are understood:

``generic``
    ``customer_id,item_id,timestamp`` plus optional ``quantity`` (default 1), ``price``, ``title``,
    ``category`` and ``country``; every name can be overridden (``ColumnNames``). Optionally a basket
    column (``--basket-col``: invoice / order id) and segment columns (``--segment-col``, also in the
    online-retail format), copied to the interactions as ``segment:NAME``.
``online-retail``
    The UCI "Online Retail" export (``InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,
    CustomerID,Country``) and its "Online Retail II" spelling (``Invoice``, ``Price``, ``Customer ID``).

Baskets: the online-retail invoice, or the ``--basket-col`` column. **Without a basket column a basket is
one customer's purchases of one calendar day** (of the timestamp as read, UTC when it had an offset); a
missing basket id falls back to that day basket as well.

Ids (customer, item, basket, segment values) are strings as written, stripped: leading zeros are kept
(``00418683``); only an Excel float spelling of a whole number (``17850.0``) is read as ``17850``. A
byte-order mark before the header is ignored.

Times: ISO-8601 (offsets converted to UTC, then naive). ``--time-format`` gives a strftime pattern, or
``epoch`` / ``epoch-ms`` (seconds / milliseconds since 1970 UTC), and is then the only format tried.
Without it, a column that is mostly not ISO and written day/month/year or month/day/year (``/``, ``-`` or
``.``, optional ``H:M[:S]``) gets its order from the values: a first field above 12 can only be a day, a
second one too; when every value fits both, reading stops and names both formats and the flag. The
online-retail format keeps its US month/day/year fallbacks.

Cleaning drops every row that cannot be a purchase of a product by a known customer. Each dropped row is
counted exactly once, by the first rule that applies, in this order (the ``DataQualityReport`` fields):

1. ``missing_customer``       no customer id (empty cell)
2. ``returns_cancellations``  quantity <= 0, or an invoice number starting with ``C`` (online-retail)
3. ``non_product_codes``      postage, fees, discounts, vouchers, test codes (online-retail, ``is_non_product``)
4. ``duplicates``             exact repeat of an earlier row (all columns, as written in the file); not
                              applied to a generic log with neither a basket nor a quantity column, where a
                              repeated line is one more unit bought (it adds to the quantity)
5. ``unparseable``            bad or empty timestamp, non-numeric quantity or price, empty item id
6. ``after_until``            timestamp at or after ``until`` (only events strictly before it are kept)

``unparseable_by_column`` counts the rows of step 5 per column (a row can be bad in several columns). If
more than ``max_bad_rows`` of all rows read are unparseable, the file is rejected: that many bad values
almost always mean a wrong column mapping or format, and training on the remainder would hide it. Every
error names the file, the column and the first bad line (row, for Parquet), and points only to flags that
exist.

Everything is vectorized (values are parsed once per distinct string), because the whole training run is
benchmarked against a bare ``pandas.read_csv`` + fit. Ten-million-line logs are the other benchmark: typed
Parquet columns are converted without hashing, rows are sorted by time once (not at all when already in
order), only rows sharing a timestamp are compared for duplicates, and the raw table is freed before the
output is built.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from training.data.cleaning import NON_PRODUCT_CODES, DataQualityReport, clean_rows, is_non_product
from training.data.columns import FORMATS, ColumnNames, check_segments, segment_key
from training.data.errors import DataError
from training.data.parsing import EPOCH_FORMATS, check_time_format
from training.data.readers import file_sha256, one_line, read_table, sniff_format


@dataclass
class PurchaseLog:
    """A cleaned purchase log: interactions sorted by time, item metadata, and where it came from."""

    interactions: pd.DataFrame
    items: pd.DataFrame
    report: DataQualityReport
    fingerprint: str
    source: str


def parse_until(text: str) -> datetime:
    """``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM`` -> naive datetime; strict: a typo must not cut data."""
    value = text.strip()
    patterns = ((r"\d{4}-\d{2}-\d{2}", "%Y-%m-%d"), (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}", "%Y-%m-%dT%H:%M"))
    for pattern, fmt in patterns:
        if re.fullmatch(pattern, value):
            try:
                return datetime.strptime(value, fmt)
            except ValueError:
                break
    raise DataError(f"invalid --until {text!r}: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM")


def load_purchase_log(
    path: str | os.PathLike,
    fmt: str = "generic",
    columns: ColumnNames | None = None,
    until: datetime | None = None,
    max_bad_rows: float = 0.01,
    time_format: str | None = None,
) -> PurchaseLog:
    """Read, validate and clean a purchase log; any problem becomes a one-line ``DataError``.

    ``columns`` applies to the generic format only, except ``segments`` (both formats). ``until`` keeps
    events strictly before it (for a reproducible training cut-off); a timezone-aware ``until`` is compared
    in UTC. ``time_format`` (``--time-format``): a strftime pattern, ``epoch`` or ``epoch-ms``.
    """
    source = os.fspath(path)
    name = str(source)
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    if not 0.0 <= float(max_bad_rows) <= 1.0:
        raise DataError(f"--max-bad-rows must be a fraction between 0 and 1, got {max_bad_rows!r}")
    columns = columns or ColumnNames()
    check_segments(columns)
    if fmt != "generic" and columns.basket is not None:
        raise DataError(f"--basket-col applies to --format generic only ({fmt} has its invoice column)")
    if time_format is not None:
        try:
            check_time_format(time_format)
        except ValueError as exc:
            raise DataError(str(exc)) from None
    try:
        kind, encoding, sep = sniff_format(name)
        fingerprint = file_sha256(name)
        interactions, items, report = clean_rows(  # no reference kept: clean_rows frees the raw table early
            read_table(name, kind, encoding, sep), name, kind, encoding, sep, fmt, columns, until, max_bad_rows,
            time_format,
        )
    except DataError:
        raise
    except MemoryError:
        raise DataError(f"{name}: out of memory while reading the file") from None
    except Exception as exc:  # pandas / pyarrow / OS errors must not escape as tracebacks
        raise DataError(f"{name}: cannot read: {one_line(exc)}") from exc
    return PurchaseLog(interactions, items, report, fingerprint, source)


__all__ = ["EPOCH_FORMATS", "FORMATS", "NON_PRODUCT_CODES", "ColumnNames", "DataError", "DataQualityReport",
           "PurchaseLog", "is_non_product", "load_purchase_log", "parse_until", "segment_key"]
