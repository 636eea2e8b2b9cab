"""Read a purchase log (CSV, gzip-compressed CSV or Parquet) into clean, typed interactions.

Two layouts are understood:

``generic``
    ``customer_id,item_id,timestamp`` plus optional ``quantity`` (default 1), ``price``, ``title``,
    ``category`` and ``country``; every name can be overridden (``ColumnNames``).
``online-retail``
    The UCI "Online Retail" export (``InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,
    CustomerID,Country``) and its "Online Retail II" spelling (``Invoice``, ``Price``, ``Customer ID``).

Cleaning drops every row that cannot be a purchase of a product by a known customer. Each dropped row is
counted exactly once, by the first rule that applies, in this order (the ``DataQualityReport`` fields):

1. ``missing_customer``       no customer id (empty cell)
2. ``returns_cancellations``  quantity <= 0, or an invoice number starting with ``C`` (online-retail)
3. ``non_product_codes``      postage, fees, discounts, vouchers ... (online-retail, see ``is_non_product``)
4. ``duplicates``             exact repeat of an earlier row (all columns, as written in the file)
5. ``unparseable``            bad or empty timestamp, non-numeric quantity or price, empty item id
6. ``after_until``            timestamp at or after ``until`` (only events strictly before it are kept)

``unparseable_by_column`` counts the rows of step 5 per column (a row can be bad in several columns). If
more than ``max_bad_rows`` of all rows read are unparseable, the file is rejected: that many bad values
almost always mean a wrong column mapping or format, and training on the remainder would hide it.

Everything is vectorized (values are parsed once per distinct string), because the whole training run is
benchmarked against a bare ``pandas.read_csv`` + fit. Ten-million-line logs are the other benchmark: typed
Parquet columns are converted without hashing, rows are sorted by time once (not at all when already in
order), only rows sharing a timestamp are compared for duplicates, and the raw table is freed before the
output is built.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa

FORMATS = ("generic", "online-retail")

#: Stock codes of the Online Retail data that are bookings, not products (compared upper-cased).
NON_PRODUCT_CODES = frozenset({
    "POST", "DOT", "M", "D", "C2", "CRUK", "PADS", "B", "S", "AMAZONFEE", "BANK CHARGES",
})
#: Prefixes of non-product stock codes (gift vouchers: ``gift_0001_10`` ...).
NON_PRODUCT_PREFIXES = ("GIFT_",)

INTERACTION_COLUMNS = ("customer_id", "item_id", "timestamp", "quantity", "price", "order_id", "country")
ITEM_COLUMNS = ("item_id", "title", "price", "category")

# Online Retail timestamps other than ISO-8601: the UCI xlsx -> csv exports write US month/day/year.
_ONLINE_RETAIL_TIME_FORMATS = ("%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%m/%d/%y %H:%M")

# Logical field -> accepted header spellings of the online-retail layout (matched ignoring case,
# spaces and underscores, so "Customer ID" == "CustomerID").
_ONLINE_RETAIL_COLUMNS: dict[str, tuple[str, ...]] = {
    "order": ("InvoiceNo", "Invoice"),
    "item": ("StockCode",),
    "title": ("Description",),
    "quantity": ("Quantity",),
    "time": ("InvoiceDate",),
    "price": ("UnitPrice", "Price"),
    "customer": ("CustomerID", "Customer ID"),
    "country": ("Country",),
}
_ONLINE_RETAIL_REQUIRED = ("order", "item", "quantity", "time", "customer")
_GENERIC_REQUIRED = ("customer", "item", "time")
# Fields whose codes and distinct values build the output (the other columns are only parsed or compared).
_OUTPUT_FIELDS = ("customer", "item", "order", "country", "title", "category")

# Column of the bad-rows check -> what to suggest.
_HINTS = {
    "timestamp": "wrong --time-col or format?",
    "quantity": "wrong --quantity-col?",
    "price": "wrong --price-col?",
    "item": "wrong --item-col?",
}
_SNIFF_BYTES = 64 * 1024
_HASH_CHUNK = 1 << 20


class DataError(Exception):
    """One-line, user-facing error; the CLI prints `tailor: error: <message>` and exits 2."""


@dataclass(frozen=True)
class ColumnNames:
    """Column names of the generic format; each one can be overridden from the CLI (``--time-col`` ...)."""

    customer: str = "customer_id"
    item: str = "item_id"
    time: str = "timestamp"
    quantity: str = "quantity"
    price: str = "price"
    title: str = "title"
    category: str = "category"
    country: str = "country"  # optional, used for segment-aware popularity


@dataclass
class DataQualityReport:
    """How many rows each cleaning rule removed; every row read is counted at most once (module doc)."""

    rows_read: int
    rows_kept: int
    missing_customer: int
    returns_cancellations: int
    non_product_codes: int
    duplicates: int
    unparseable: int
    after_until: int
    unparseable_by_column: dict[str, int] = field(default_factory=dict)
    events_from_stream: int = 0  # purchases added from the service's events stream (--events-from)

    def to_dict(self) -> dict:
        """JSON-ready copy (goes into the artifact manifest)."""
        return asdict(self)

    def format(self) -> str:
        """A short table for the terminal, so a user sees what was thrown away before trusting a model."""
        def pct(n: int) -> str:
            return f"{100.0 * n / self.rows_read:5.1f}%" if self.rows_read else "     -"

        bad = ", ".join(f"{col} {n:,}" for col, n in self.unparseable_by_column.items() if n)
        lines = [
            ("rows read", self.rows_read, ""),
            ("without customer", self.missing_customer, ""),
            ("returns/cancellations", self.returns_cancellations, ""),
            ("non-product codes", self.non_product_codes, ""),
            ("exact duplicates", self.duplicates, ""),
            ("unparseable", self.unparseable, f"  ({bad})" if bad else ""),
            ("at/after --until", self.after_until, ""),
            *([("events from stream", self.events_from_stream, "")] if self.events_from_stream else []),
            ("rows kept", self.rows_kept, ""),
        ]
        width = max(len(f"{n:,}") for _, n, _ in lines)
        out = ["data quality:"]
        for label, n, note in lines:
            out.append(f"  {label:<22} {n:>{width},} {pct(n)}{note}")
        return "\n".join(out)


@dataclass
class PurchaseLog:
    """A cleaned purchase log: interactions sorted by time, item metadata, and where it came from."""

    interactions: pd.DataFrame
    items: pd.DataFrame
    report: DataQualityReport
    fingerprint: str
    source: str


# --------------------------------------------------------------------------------------------- public


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


def is_non_product(codes: pd.Series) -> pd.Series:
    """Online Retail stock codes that are postage, fees, discounts, samples or vouchers, not products.

    Real product codes contain digits (``85123A``, ``15056BL``); bookings are words (``POST``, ``DOT``,
    ``AMAZONFEE``) plus a few known coded ones (``C2`` carriage, ``gift_0001_10`` vouchers). The
    no-digit rule also drops the two web-shop party bags ``DCGSSBOY``/``DCGSSGIRL`` (24 lines, none with
    a customer). Empty codes are not matched (they are counted as unparseable instead).
    """
    upper = codes.str.upper()
    present = upper.notna()
    known = upper.isin(list(NON_PRODUCT_CODES)) | upper.str.startswith(NON_PRODUCT_PREFIXES)
    no_digit = ~upper.str.contains(r"\d", regex=True)
    return (present & (known.fillna(False) | no_digit.fillna(False))).astype(bool)


def load_purchase_log(
    path: str | os.PathLike,
    fmt: str = "generic",
    columns: ColumnNames | None = None,
    until: datetime | None = None,
    max_bad_rows: float = 0.01,
) -> PurchaseLog:
    """Read, validate and clean a purchase log; any problem becomes a one-line ``DataError``.

    ``columns`` applies to the generic format only. ``until`` keeps events strictly before it (for a
    reproducible training cut-off); a timezone-aware ``until`` is compared in UTC.
    """
    source = os.fspath(path)
    name = str(source)
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    if not 0.0 <= float(max_bad_rows) <= 1.0:
        raise DataError(f"--max-bad-rows must be a fraction between 0 and 1, got {max_bad_rows!r}")
    columns = columns or ColumnNames()
    try:
        kind, encoding, sep = _sniff(name)
        fingerprint = _sha256(name)
        interactions, items, report = _clean(  # no reference kept: _clean frees the raw table early
            _read(name, kind, encoding, sep), name, kind, encoding, sep, fmt, columns, until, max_bad_rows
        )
    except DataError:
        raise
    except MemoryError:
        raise DataError(f"{name}: out of memory while reading the file") from None
    except Exception as exc:  # pandas / pyarrow / OS errors must not escape as tracebacks
        raise DataError(f"{name}: cannot read: {_one_line(exc)}") from exc
    return PurchaseLog(interactions, items, report, fingerprint, source)


# ---------------------------------------------------------------------------------------------- input


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _sniff(path: str) -> tuple[str, str, str]:
    """(kind, encoding, delimiter) from the first bytes: gzip and Parquet by magic, never by extension."""
    try:
        if not os.path.exists(path):
            raise DataError(f"{path}: file not found")
        if os.path.isdir(path):
            raise DataError(f"{path}: is a directory, not a file")
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError as exc:
        raise DataError(f"{path}: cannot open: {exc.strerror or _one_line(exc)}") from None
    if not head:
        raise DataError(f"{path}: file is empty")
    if head[:4] == b"PAR1":
        return "parquet", "utf-8", ","
    kind = "csv"
    if head[:2] == b"\x1f\x8b":
        kind = "gzip"
        try:
            with gzip.open(path, "rb") as fh:
                head = fh.read(_SNIFF_BYTES)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: corrupt gzip file: {_one_line(exc)}") from None
        if not head:
            raise DataError(f"{path}: file is empty (after gzip decompression)")
    _reject_binary(path, head, kind)
    encoding = "utf-8"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut by the sniff window
            encoding = "cp1252"
    text = head.decode(encoding, errors="replace").lstrip("\ufeff")
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    first = text.splitlines()[0] if text.splitlines() else ""
    sep = max((",", ";", "\t", "|"), key=first.count)
    return kind, encoding, sep if first.count(sep) else ","


_BINARY_MAGIC = {
    b"PK\x03\x04": "a zip archive (or an .xlsx workbook)",
    b"BZh": "bzip2-compressed",
    b"\xfd7zXZ": "xz-compressed",
    b"\x28\xb5\x2f\xfd": "zstd-compressed",
    b"7z\xbc\xaf": "a 7-zip archive",
    b"%PDF": "a PDF document",
    b"\xd0\xcf\x11\xe0": "an old Excel (.xls) workbook",
}


def _reject_binary(path: str, head: bytes, kind: str) -> None:
    where = " (inside gzip)" if kind == "gzip" else ""
    expected = "expected CSV text, gzip-compressed CSV or Parquet"
    for magic, what in _BINARY_MAGIC.items():
        if head.startswith(magic):
            raise DataError(f"{path}: file is {what}{where}; {expected}")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{path}: file is UTF-16 text{where}; save it as UTF-8 CSV")
    controls = sum(1 for b in head[:4096] if b < 32 and b not in (9, 10, 12, 13))
    if b"\x00" in head or controls > 0.05 * min(len(head), 4096):
        raise DataError(f"{path}: binary file{where}, not CSV text; {expected}")


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read(path: str, kind: str, encoding: str, sep: str) -> pd.DataFrame:
    """All columns; CSV cells as strings exactly as written (only empty cells are missing)."""
    if kind == "parquet":
        try:
            df = pd.read_parquet(path)
        except Exception as exc:
            raise DataError(f"{path}: unreadable Parquet file: {_one_line(exc)}") from None
        _release_memory()  # the reader's decoding buffers
        df.columns = [str(c).strip() for c in df.columns]
        return df.reset_index(drop=True)
    compression = "gzip" if kind == "gzip" else None

    def read(enc: str) -> pd.DataFrame:
        return pd.read_csv(path, engine="pyarrow", dtype=str, sep=sep, compression=compression,
                           encoding=enc, keep_default_na=False, na_values=[""])

    try:
        try:
            df = read(encoding)
        except (ValueError, UnicodeDecodeError) as exc:
            if encoding != "utf-8" or "utf" not in str(exc).lower():
                raise
            try:  # a non-UTF-8 byte beyond the sniffed head: Excel exports are cp1252
                df = read("cp1252")
            except (ValueError, UnicodeDecodeError):
                df = read("latin-1")  # decodes any byte
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except Exception as exc:
        raise DataError(f"{path}: not a readable CSV file: {_one_line(exc)}") from None
    _release_memory()  # the reader's buffers
    df.columns = [str(c).strip().lstrip("\ufeff").strip() for c in df.columns]
    return df


# ------------------------------------------------------------------------------------------- columns


def _norm(name: str) -> str:
    return re.sub(r"[\s_]+", "", name).lower()


def _find(columns: Sequence[str], wanted: Sequence[str], loose: bool) -> str | None:
    for name in wanted:
        if name in columns:
            return name
    lookup: dict[str, list[str]] = {}
    for c in columns:
        lookup.setdefault(_norm(c) if loose else c.lower(), []).append(c)
    for name in wanted:
        hits = lookup.get(_norm(name) if loose else name.lower(), [])
        if len(hits) == 1:
            return hits[0]
    return None


def _found(columns: Sequence[str]) -> str:
    shown = ", ".join(repr(c) for c in columns[:20])
    return shown + (f", ... ({len(columns)} in all)" if len(columns) > 20 else "")


def _resolve(raw: pd.DataFrame, path: str, fmt: str, names: ColumnNames) -> dict[str, str]:
    """Logical field -> column of ``raw``; DataError naming the missing column and the columns found."""
    cols = list(raw.columns)
    resolved: dict[str, str] = {}
    if fmt == "online-retail":
        for key, spellings in _ONLINE_RETAIL_COLUMNS.items():
            hit = _find(cols, spellings, loose=True)
            if hit is not None:
                resolved[key] = hit
            elif key in _ONLINE_RETAIL_REQUIRED:
                hint = " (looks like the generic layout: use --format generic)" if _find(
                    cols, ("customer_id", "item_id"), loose=False) else ""
                raise DataError(
                    f"{path}: required column {spellings[0]!r} (online-retail format) not found; "
                    f"columns found: {_found(cols)}{hint}"
                )
        return resolved
    defaults = ColumnNames()
    for key in ("customer", "item", "time", "quantity", "price", "title", "category", "country"):
        wanted = getattr(names, key)
        hit = _find(cols, (wanted,), loose=False)
        if hit is not None:
            resolved[key] = hit
        elif key in _GENERIC_REQUIRED or wanted != getattr(defaults, key):
            kind = "required column" if key in _GENERIC_REQUIRED else "column"
            if _find(cols, ("InvoiceNo", "Invoice"), loose=True) and _find(cols, ("StockCode",), loose=True):
                hint = " (looks like the online-retail layout: use --format online-retail)"
            else:
                hint = f" (use --{key}-col to name it)"
            raise DataError(f"{path}: {kind} {wanted!r} not found; columns found: {_found(cols)}{hint}")
    return resolved


# ------------------------------------------------------------------------------------------- parsing


def _text(series: pd.Series) -> pd.Series:
    """Stripped strings, NaN for empty or missing (typed Parquet values are converted first)."""
    s = series
    if not pd.api.types.is_string_dtype(s.dtype) or s.dtype == object:
        if pd.api.types.is_float_dtype(s.dtype):
            finite = s.dropna()
            if len(finite) and bool((finite == np.floor(finite)).all()) and finite.abs().max() < 2**53:
                s = s.astype("Int64")  # 17850.0 -> "17850"
        s = s.astype("str")
    s = s.str.strip()
    return s.where(s != "")


class _Column:
    """A raw column; text is worked on as its distinct values plus one code per row (-1 = empty cell).

    Cleaning and parsing of text run on the distinct values only: an order repeats its invoice number, date and
    customer on every line, so a 500k-row log has a few thousand values per column to look at. The codes are
    computed on first use: typed Parquet columns (numbers, datetimes) are converted row by row instead, since
    hashing ten million floats only to convert their distinct values costs seconds and saves nothing.
    """

    def __init__(self, series: pd.Series) -> None:
        self._series: pd.Series | None = series
        self.dtype = series.dtype
        self._codes: np.ndarray | None = None
        self._uniques: pd.Series | None = None
        self._text: pd.Series | None = None

    @property
    def series(self) -> pd.Series:
        """The raw values (gone after ``detach``)."""
        if self._series is None:
            raise RuntimeError("raw column already detached")
        return self._series

    @property
    def numeric(self) -> bool:
        """Numbers stored as such (Parquet): converted directly, with no text parsing."""
        return pd.api.types.is_numeric_dtype(self.dtype) and not pd.api.types.is_bool_dtype(self.dtype)

    @property
    def datetime(self) -> bool:
        """Datetimes stored as such (Parquet): converted directly, with no text parsing."""
        return isinstance(self.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(self.dtype)

    @property
    def factorized(self) -> bool:
        """Whether ``codes`` are already computed (then comparing rows by code costs no hashing)."""
        return self._codes is not None

    @property
    def codes(self) -> np.ndarray:
        """One code per row into ``uniques`` (-1 = empty cell)."""
        return self._factorized()[0]

    @property
    def uniques(self) -> pd.Series:
        """Distinct non-empty values in order of first appearance."""
        return self._factorized()[1]

    def _factorized(self) -> tuple[np.ndarray, pd.Series]:
        if self._codes is None or self._uniques is None:
            self._codes, self._uniques = _factorize(self.series)
        return self._codes, self._uniques

    def detach(self) -> None:
        """Keep codes and distinct values only, so that the raw column's memory can be freed."""
        self._factorized()
        self._series = None

    @property
    def text(self) -> pd.Series:
        """Distinct values as stripped strings (NaN when blank)."""
        if self._text is None:
            self._text = _text(self.uniques)
        return self._text

    def codes_at(self, rows: np.ndarray) -> tuple[np.ndarray, int]:
        """Codes of ``rows`` (-1 = empty cell) and how many distinct values they point to.

        A column not factorized yet is factorized on ``rows`` only: duplicate detection needs every column,
        but usually on a small share of the rows.
        """
        if self._codes is None:
            codes, uniques = _factorize(self.series.iloc[rows])
            return codes, len(uniques)
        return self._codes[rows], len(self.uniques)

    def per_row(self, values: np.ndarray, fill: object) -> np.ndarray:
        """Expand one value per distinct value to one per row (``fill`` for empty cells)."""
        return np.append(np.asarray(values), np.asarray([fill], dtype=np.asarray(values).dtype))[self.codes]

    def strings(self, values: pd.Series, rows: np.ndarray) -> pd.Series:
        """Per-distinct-value strings -> a ``str`` Series for ``rows`` (NaN for empty cells)."""
        return pd.Series(values.astype("str").array.take(self.codes[rows], allow_fill=True), dtype="str")


def _factorize(series: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """(code per row, -1 for missing; distinct values in order of first appearance).

    The codes are int32 when they fit: half the memory of ten million int64 codes.
    """
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    if len(uniques) < 2**31 - 1:
        codes = codes.astype(np.int32)
    return np.asarray(codes), pd.Series(uniques).reset_index(drop=True)


def _numbers(column: _Column) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: (float64 value, NaN unless valid; unparseable; blank or empty)."""
    if column.numeric:
        values = np.array(column.series.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
        bad = np.isinf(values)
        values[bad] = np.nan
        return values, bad, np.isnan(values) & ~bad
    text = column.text
    blank = text.isna().to_numpy(dtype=bool)
    parsed = pd.to_numeric(pd.Series(text.to_numpy(dtype=object)), errors="coerce")
    values = np.array(parsed.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    values[~np.isfinite(values)] = np.nan
    bad = ~blank & np.isnan(values)
    return column.per_row(values, np.nan), column.per_row(bad, False), column.per_row(blank, True)


_NS_MIN = pd.Timestamp.min.as_unit("us")
_NS_MAX = pd.Timestamp.max.as_unit("us")
_NAT_TICKS = np.datetime64("NaT", "ns").view(np.int64)


def _naive_ns(values: pd.Series | pd.Index) -> np.ndarray:
    """Datetimes -> naive UTC datetime64[ns]; values outside the ns range become NaT."""
    idx = pd.DatetimeIndex(values)
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    idx = idx.as_unit("us") if idx.unit in ("s", "ms") else idx
    if idx.unit != "ns":
        idx = idx.where((idx >= _NS_MIN) & (idx <= _NS_MAX))
    return idx.as_unit("ns").to_numpy()


def _timestamps(column: _Column, formats: Sequence[str]) -> np.ndarray:
    """Per row: naive datetime64[ns], NaT if unparseable or blank.

    Typed datetimes are converted directly. Text is parsed per distinct value: ISO-8601 first (offsets are
    converted to UTC), then each of ``formats`` on what is still unparsed.
    """
    if column.datetime:
        return _naive_ns(column.series)
    strings = column.text
    parsed = pd.to_datetime(strings, format="ISO8601", errors="coerce", utc=True)
    for fmt in formats:
        todo = parsed.isna() & strings.notna()
        if not todo.any():
            break
        parsed[todo] = pd.to_datetime(strings[todo], format=fmt, errors="coerce", utc=True)
    return column.per_row(_naive_ns(parsed), np.datetime64("NaT", "ns"))


def _in_time_order(rows: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    """``rows`` stably sorted by ``ticks[rows]`` (int64 times; file order within a time).

    Logs are usually exported in time order, which one comparison pass confirms. Otherwise, when the times
    fit (whole seconds over centuries do), each time is packed with its position into one int64: a plain
    sort of those is stable by construction and about twice as fast as a stable argsort.
    """
    t = ticks[rows]
    if len(t) < 2 or bool((t[1:] >= t[:-1]).all()):
        return rows
    low, high = int(t.min()), int(t.max())
    if low == _NAT_TICKS or high - low >= 2**63:
        return rows[np.argsort(t, kind="stable")]
    t -= low
    for unit in (10**9, 10**6, 10**3, 1):  # the coarsest unit all times are whole multiples of
        packed = t // unit
        if unit == 1 or np.array_equal(packed * unit, t):
            break
    bits = (len(t) - 1).bit_length()
    if ((high - low) // unit).bit_length() + bits > 63:
        return rows[np.argsort(t, kind="stable")]
    packed <<= bits
    packed |= np.arange(len(packed), dtype=np.int64)
    packed.sort()
    packed &= (1 << bits) - 1
    return rows[packed]


def _shared_times(ticks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For sorted times: the positions of the rows that share their time with another row, and for each of
    them a run number (rows of one time share it). Only these rows can be equal to another row."""
    same = ticks[1:] == ticks[:-1]
    shared = np.zeros(len(ticks), dtype=bool)
    shared[1:] = same
    shared[:-1] |= same
    pos = np.flatnonzero(shared)
    new = np.ones(len(pos), dtype=bool)
    np.not_equal(ticks[pos[1:]], ticks[pos[:-1]], out=new[1:])
    return pos, np.cumsum(new) - 1


def _first_seen(labels: np.ndarray) -> np.ndarray:
    """True at the first row of each label; labels must first appear in increasing order (factorize)."""
    first = np.ones(len(labels), dtype=bool)
    if len(labels) > 1:
        first[1:] = labels[1:] > np.maximum.accumulate(labels)[:-1]
    return first


def _duplicated(columns: Sequence[_Column], rows: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    """Exact repeats (all columns equal, as written) among ``rows``, the first occurrence not counted.

    ``rows`` are in stable time order and ``ticks`` are their parsed times. Equal values parse equally, so
    only rows sharing their time with another row can repeat one, and they follow file order within a time.
    The columns are compared on those rows only, already factorized ones first, narrowing after each column
    to the keys seen more than once: on ten million lines almost nothing is left after the customer.
    """
    pos, key = _shared_times(ticks)
    for column in sorted(columns, key=lambda c: not c.factorized):
        if not len(pos):
            break
        codes, width = column.codes_at(rows[pos])
        key, _ = pd.factorize(key * (width + 1) + codes + 1)
        repeated = np.bincount(key)[key] > 1
        pos, key = pos[repeated], key[repeated]
    out = np.zeros(len(rows), dtype=bool)
    out[pos] = ~_first_seen(key)
    return out


# ------------------------------------------------------------------------------------------- cleaning


def _clean(
    raw: pd.DataFrame,
    path: str,
    kind: str,
    encoding: str,
    sep: str,
    fmt: str,
    names: ColumnNames,
    until: datetime | None,
    max_bad_rows: float,
) -> tuple[pd.DataFrame, pd.DataFrame, DataQualityReport]:
    n = len(raw)
    if n == 0:
        raise DataError(f"{path}: no data rows (header only); columns found: {_found(list(raw.columns))}")
    col = _resolve(raw, path, fmt, names)
    retail = fmt == "online-retail"
    every = [_Column(raw.iloc[:, j]) for j in range(raw.shape[1])]
    by_name: dict[str, _Column] = {}
    for name, column in zip(raw.columns, every, strict=True):
        by_name.setdefault(name, column)
    field_of = {key: by_name[name] for key, name in col.items()}

    customer = field_of["customer"]
    customer_u = customer.text.str.replace(r"^(\d+)\.0+$", r"\1", regex=True)  # Excel: 17850.0 -> 17850
    item = field_of["item"]
    item_u = item.text.str.upper() if retail else item.text  # 85123a == 85123A in Online Retail
    time_values = _timestamps(field_of["time"], _ONLINE_RETAIL_TIME_FORMATS if retail else ())
    bad_time = np.isnat(time_values)
    if "quantity" in field_of:
        quantity, bad_quantity, q_blank = _numbers(field_of["quantity"])
        quantity[q_blank] = 1.0  # blank -> 1
    else:
        quantity, bad_quantity = np.ones(n), np.zeros(n, dtype=bool)
    if "price" in field_of:
        price, bad_price, _ = _numbers(field_of["price"])
    else:
        price, bad_price = np.full(n, np.nan), np.zeros(n, dtype=bool)

    # 1-6: each rule only sees the rows the earlier rules left (module docstring).
    alive = ~customer.per_row(customer_u.isna().to_numpy(dtype=bool), True)
    missing_customer = n - int(alive.sum())

    returns = quantity <= 0
    if "order" in field_of:
        cancelled_u = field_of["order"].text.str.upper().str.startswith("C").fillna(False)
        returns |= field_of["order"].per_row(cancelled_u.to_numpy(dtype=bool), False)
    returns &= alive
    alive &= ~returns

    non_product = np.zeros(n, dtype=bool)
    if retail:
        non_product = item.per_row(is_non_product(item_u).to_numpy(dtype=bool), False) & alive
        alive &= ~non_product

    # The output columns are factorized now (duplicate detection compares them by code) and their raw values
    # dropped; the hash tables of the factorizations are handed back.
    used = {key: column for key, column in field_of.items() if key in _OUTPUT_FIELDS}
    for column in used.values():
        column.detach()
    _release_memory()

    # Sorted by time once, here: duplicate detection uses the order, and the output keeps it.
    ticks = time_values.view(np.int64)
    keep = _in_time_order(np.flatnonzero(alive), ticks)
    duplicate = np.zeros(n, dtype=bool)
    duplicate[keep] = _duplicated(every, keep, ticks[keep])
    alive &= ~duplicate

    bad_by_column = {
        "timestamp": (col["time"], bad_time & alive),
        "quantity": (col.get("quantity", ""), bad_quantity & alive),
        "price": (col.get("price", ""), bad_price & alive),
        "item": (col["item"], item.per_row(item_u.isna().to_numpy(dtype=bool), True) & alive),
    }
    unparseable = np.zeros(n, dtype=bool)
    for _, mask in bad_by_column.values():
        unparseable |= mask
    alive &= ~unparseable
    bad_rows = int(unparseable.sum())
    if bad_rows and bad_rows > max_bad_rows * n:
        _too_many_bad(raw, path, kind, encoding, sep, n, bad_by_column, max_bad_rows)

    # Only codes and parsed values are used from here on: free the raw table before the output is built.
    del raw, every, by_name, field_of
    _release_memory()

    after = np.zeros(n, dtype=bool)
    if until is not None:
        cut = pd.Timestamp(until)
        if cut.tzinfo is not None:
            cut = cut.tz_convert("UTC").tz_localize(None)
        after = alive & (time_values >= cut.as_unit("ns").to_datetime64())
        alive &= ~after

    report = DataQualityReport(
        rows_read=n,
        rows_kept=int(alive.sum()),
        missing_customer=missing_customer,
        returns_cancellations=int(returns.sum()),
        non_product_codes=int(non_product.sum()),
        duplicates=int(duplicate.sum()),
        unparseable=bad_rows,
        after_until=int(after.sum()),
        unparseable_by_column={k: int(m.sum()) for k, (_, m) in bad_by_column.items()},
    )
    if report.rows_kept == 0:
        raise DataError(f"{path}: no usable rows left after cleaning ({_summary(report)})")

    keep = keep[alive[keep]]  # time order, file order within a time
    timestamps, quantity, price = time_values[keep], quantity[keep], price[keep]
    del time_values, ticks  # free the full-length arrays before the output is built
    if "order" in used:
        order_id = used["order"].strings(used["order"].text, keep).astype("str")
        if order_id.isna().any():
            generic = "order-" + _generic_order_ids(customer.codes[keep], timestamps.view(np.int64)).astype("str")
            order_id = order_id.fillna(generic)
    else:
        order_id = _generic_order_ids(customer.codes[keep], timestamps.view(np.int64))
    country = (
        used["country"].strings(used["country"].text, keep) if "country" in used
        else pd.Series(np.nan, index=range(len(keep)), dtype="str")
    )
    interactions = pd.DataFrame({
        "customer_id": customer.strings(customer_u, keep),
        "item_id": item.strings(item_u, keep),
        "timestamp": pd.Series(timestamps, dtype="datetime64[ns]", copy=False),
        "quantity": pd.Series(quantity, dtype="float64", copy=False),
        "price": pd.Series(price, dtype="float64", copy=False),
        "order_id": order_id,
        "country": country,
    }, copy=False)  # the arrays are fresh: copying (and consolidating) them only costs memory
    items = _items(item, item_u, keep, price, {k: used.get(k) for k in ("title", "category")})
    return interactions, items, report


def _release_memory() -> None:
    """Hand memory Arrow has freed back to the system.

    Arrow's allocator keeps freed blocks for reuse, so without this the raw table's few hundred megabytes stay
    resident while NumPy allocates the output next to them.
    """
    pa.default_memory_pool().release_unused()


def _generic_order_ids(customer_codes: np.ndarray, ticks: np.ndarray) -> pd.Series:
    """A generic log has no order numbers: a customer's lines with the same timestamp form one order.

    The orders are numbered (int64, by first appearance) rather than spelled out as strings: on ten million
    lines the strings cost tens of seconds and gigabytes, and downstream only counts distinct orders. Rows
    come in time order (``ticks``), so a line alone at its time is an order of its own and only the lines
    sharing a time with another line need hashing.
    """
    pos, runs = _shared_times(ticks)
    width = int(customer_codes.max()) + 2 if len(customer_codes) else 1
    labels, _ = pd.factorize(runs * width + customer_codes[pos] + 1)
    first = np.ones(len(ticks), dtype=bool)
    first[pos] = _first_seen(labels)
    number = np.cumsum(first) - 1
    number[pos] = number[pos[first[pos]]][labels]
    return pd.Series(number.astype(np.int64))


def _mode(item: np.ndarray, value: np.ndarray) -> pd.Series:
    """Most frequent value code per item code (rows in time order, ties to the most recent)."""
    df = pd.DataFrame({"item": item, "value": value, "pos": np.arange(len(item))})
    df = df[df["value"] >= 0]
    stats = df.groupby(["item", "value"], sort=False).agg(count=("pos", "size"), last=("pos", "max"))
    stats = stats.sort_values(["count", "last"], ascending=False, kind="stable").reset_index()
    return stats.drop_duplicates("item").set_index("item")["value"]


def _items(
    item: _Column, item_u: pd.Series, keep: np.ndarray, price: np.ndarray, extra: dict[str, _Column | None]
) -> pd.DataFrame:
    """One row per kept item, sorted by id: most common title/category, median positive unit price."""
    item_map, item_ids = pd.factorize(item_u)  # distinct raw spelling -> cleaned id
    item_code = np.asarray(item_map, dtype=np.int64)[item.codes[keep]]
    present = np.flatnonzero(np.bincount(item_code, minlength=len(item_ids)))
    ids = pd.Series(np.asarray(item_ids, dtype=object)[present], dtype="str")
    order = np.argsort(ids.to_numpy(dtype=object), kind="stable")
    present, ids = present[order], ids.iloc[order].reset_index(drop=True)
    positive = price > 0
    if positive.all():  # no filtered copies of ten million rows when there is nothing to filter
        median = pd.Series(price, copy=False).groupby(item_code).median()
    else:
        median = pd.Series(price[positive]).groupby(item_code[positive]).median()
    out = pd.DataFrame({"item_id": ids})
    for key in ("title", "category"):
        column = extra.get(key)
        if column is None:
            values = pd.Series(np.nan, index=out.index, dtype="str")
        else:
            value_map, value_names = pd.factorize(column.text)
            value_code = np.append(np.asarray(value_map, dtype=np.int64), -1)[column.codes[keep]]
            best = _mode(item_code, value_code).reindex(present).to_numpy()
            names = np.append(np.asarray(value_names, dtype=object), np.nan)
            values = pd.Series(names[np.where(np.isnan(best), -1, best).astype(np.int64)], dtype="str")
        out[key] = values
        if key == "title":
            out["price"] = median.reindex(present).to_numpy(dtype=np.float64)
    return out[list(ITEM_COLUMNS)]


# ------------------------------------------------------------------------------------------- errors


def _summary(report: DataQualityReport) -> str:
    parts = [f"{report.rows_read:,} read"]
    for label, n in (
        ("without customer", report.missing_customer),
        ("returns/cancellations", report.returns_cancellations),
        ("non-product codes", report.non_product_codes),
        ("duplicates", report.duplicates),
        ("unparseable", report.unparseable),
        ("at/after --until", report.after_until),
    ):
        if n:
            parts.append(f"{n:,} {label}")
    return ", ".join(parts)


def _too_many_bad(
    raw: pd.DataFrame,
    path: str,
    kind: str,
    encoding: str,
    sep: str,
    n: int,
    bad_by_column: dict[str, tuple[str, np.ndarray]],
    max_bad_rows: float,
) -> None:
    """Reject the file naming the worst column, its first bad line and value (usually a wrong mapping)."""
    what, (column, mask) = max(bad_by_column.items(), key=lambda kv: int(kv[1][1].sum()))
    count = int(mask.sum())
    first = int(np.flatnonzero(mask)[0])
    value = raw.iloc[first, list(raw.columns).index(column)]  # first of equally named columns, as parsed
    shown = "(empty)" if pd.isna(value) or str(value).strip() == "" else repr(str(value)[:60])
    where = f"row {first + 1}" if kind == "parquet" else f"line {_file_line(path, kind, encoding, sep, first)}"
    noun = {"timestamp": "timestamp", "quantity": "quantity", "price": "price", "item": "item id"}[what]
    raise DataError(
        f"{path}: {count:,} of {n:,} rows ({100.0 * count / n:.1f}%) have an unparseable {noun} in "
        f"column {column!r}, first at {where}: {shown} — {_HINTS[what]} "
        f"(limit {100.0 * max_bad_rows:g}%)"
    )


def _file_line(path: str, kind: str, encoding: str, sep: str, row: int) -> int:
    """1-based line of data row ``row`` (0-based), header = line 1; exact with blank lines and quoted
    newlines. Only used on the error path, so a slow csv-module scan is fine."""
    try:
        enc = "utf-8-sig" if encoding == "utf-8" else encoding
        raw = gzip.open(path, "rb") if kind == "gzip" else open(path, "rb")  # noqa: SIM115
        with raw, io.TextIOWrapper(raw, encoding=enc, errors="replace", newline="") as fh:
            reader = csv.reader(fh, delimiter=sep)
            seen_header, index, previous = False, -1, 0
            for record in reader:
                start, previous = previous + 1, reader.line_num
                if not record:  # blank line: skipped by the reader, as pyarrow does
                    continue
                if not seen_header:
                    seen_header = True
                    continue
                index += 1
                if index == row:
                    return start
    except (OSError, csv.Error, UnicodeError, EOFError):
        pass
    return row + 2


__all__ = [
    "FORMATS",
    "NON_PRODUCT_CODES",
    "ColumnNames",
    "DataError",
    "DataQualityReport",
    "PurchaseLog",
    "is_non_product",
    "load_purchase_log",
    "parse_until",
]
