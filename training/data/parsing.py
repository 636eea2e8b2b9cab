"""Typed columns from raw text: numbers, ids and timestamps, parsed once per distinct value."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

# Online Retail timestamps other than ISO-8601: the UCI xlsx -> csv exports write US month/day/year.
ONLINE_RETAIL_TIME_FORMATS = ("%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%m/%d/%y %H:%M")


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


class Column:
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


def parse_numbers(column: Column) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


EPOCH_FORMATS = {"epoch": 1_000_000.0, "epoch-ms": 1_000.0}  # --time-format name -> microseconds per unit


# d/m/y or m/d/y (separator /, - or .; 2- or 4-digit year), optionally followed by H:M or H:M:S.
_DAY_MONTH = re.compile(r"^(\d{1,2})([/.-])(\d{1,2})\2(\d{4}|\d{2})(?:([ T])(\d{1,2}):(\d{2})(:\d{2})?)?$")


@dataclass(frozen=True)
class TimeFormats:
    """How a text time column is read: ``explicit`` (``--time-format``) alone, else ISO-8601 followed by
    ``fallbacks`` (the online-retail exports), else the day/month order detected from the values."""

    explicit: str | None = None
    fallbacks: tuple[str, ...] = ()
    detect: bool = True


class AmbiguousDates(Exception):
    """Every d/m/y-shaped value has both leading fields <= 12: no way to tell day/month from month/day."""

    def __init__(self, value: int, candidates: tuple[str, str]) -> None:
        super().__init__(candidates)
        self.value = value  # index of an ambiguous distinct value (``Column.uniques``)
        self.candidates = candidates  # (day-first format, month-first format)


def check_time_format(fmt: str) -> None:
    """A ``--time-format`` must be ``epoch``, ``epoch-ms`` or a strftime pattern pandas accepts."""
    if fmt in EPOCH_FORMATS:
        return
    if "%" not in fmt:
        raise ValueError(f"invalid --time-format {fmt!r}: expected a strftime pattern such as %d/%m/%Y or "
                         "%m/%d/%Y %H:%M, or epoch / epoch-ms")
    try:
        pd.to_datetime(pd.Series(["2000"]), format=fmt, errors="coerce")
    except ValueError as exc:
        raise ValueError(f"invalid --time-format {fmt!r}: {exc}") from None


def _epoch(values: np.ndarray, us_per_unit: float) -> np.ndarray:
    """Seconds or milliseconds since 1970-01-01 UTC -> datetime64[ns] (NaT outside the ns range)."""
    us = np.round(values * us_per_unit)  # exact for whole seconds / milliseconds
    ok = np.isfinite(us) & (np.abs(us) < 9.2e15)
    ticks = np.full(len(us), _NAT_TICKS, dtype=np.int64)
    ticks[ok] = us[ok].astype(np.int64) * 1000
    return ticks.view("datetime64[ns]")


def _day_month_formats(strings: pd.Series) -> tuple[dict[int, str], AmbiguousDates | None]:
    """Formats for the d/m/y-shaped ``strings`` (position -> format), decided from the values themselves.

    A first field above 12 can only be a day (d/m/y), a second field above 12 only a day (m/d/y). The order
    that explains more values wins (the others stay unparseable); when no value tells, the result is an
    ``AmbiguousDates`` naming both candidates.
    """
    parts = strings.str.extract(_DAY_MONTH)
    shaped = parts[0].notna().to_numpy()
    if not shaped.any():
        return {}, None
    parts = parts[shaped]
    first, second = parts[0].astype(int).to_numpy(), parts[2].astype(int).to_numpy()
    day_first = int(((first > 12) & (first <= 31) & (second >= 1) & (second <= 12)).sum())
    month_first = int(((second > 12) & (second <= 31) & (first >= 1) & (first <= 12)).sum())
    shapes = parts[1] + "|" + parts[3].str.len().astype(str) + "|" + parts[4].fillna("") + "|" + \
        parts[7].notna().astype(str)

    def spell(shape: str, day_first: bool) -> str:
        sep, year, tsep, seconds = shape.split("|")
        head = f"%d{sep}%m" if day_first else f"%m{sep}%d"
        date = f"{head}{sep}{'%Y' if year == '4' else '%y'}"
        return date + (f"{tsep}%H:%M" + (":%S" if seconds == "True" else "") if tsep else "")

    if day_first == month_first == 0:
        shape = shapes.iloc[0]
        return {}, AmbiguousDates(int(parts.index[0]), (spell(shape, True), spell(shape, False)))
    order = day_first >= month_first
    return {int(i): spell(shape, order) for i, shape in zip(parts.index, shapes, strict=True)}, None


def _mostly(column: Column, values: np.ndarray, among: np.ndarray) -> bool:
    """Whether the rows holding one of ``values`` are more than half of the rows holding one of ``among``
    (masks over the distinct values)."""
    rows = np.bincount(column.codes[column.codes >= 0], minlength=len(values))
    return 2 * int(rows[values].sum()) > int(rows[among].sum())


def parse_timestamps(column: Column, formats: TimeFormats | Sequence[str] = ()) -> np.ndarray:
    """Per row: naive datetime64[ns], NaT if unparseable or blank.

    Typed datetimes are converted directly. Text is parsed per distinct value: with an explicit format by
    that format only (``epoch``/``epoch-ms``: numbers of seconds/milliseconds since 1970 UTC); otherwise
    ISO-8601 first (offsets are converted to UTC), then each fallback format on what is still unparsed, then,
    when most rows are not ISO, day/month order detected from the values (``AmbiguousDates``
    when they cannot tell).
    """
    if not isinstance(formats, TimeFormats):
        formats = TimeFormats(fallbacks=tuple(formats), detect=False)
    if column.datetime:
        return _naive_ns(column.series)
    nat = np.datetime64("NaT", "ns")
    if formats.explicit in EPOCH_FORMATS:
        scale = EPOCH_FORMATS[formats.explicit]
        if column.numeric:
            return _epoch(column.series.to_numpy(dtype=np.float64, na_value=np.nan), scale)
        numbers = pd.to_numeric(pd.Series(column.text.to_numpy(dtype=object)), errors="coerce")
        return column.per_row(_epoch(numbers.to_numpy(dtype=np.float64, na_value=np.nan), scale), nat)
    strings = column.text
    if formats.explicit is not None:
        parsed = pd.to_datetime(strings, format=formats.explicit, errors="coerce", utc=True)
        return column.per_row(_naive_ns(parsed), nat)
    parsed = pd.to_datetime(strings, format="ISO8601", errors="coerce", utc=True)
    for fmt in formats.fallbacks:
        todo = parsed.isna() & strings.notna()
        if not todo.any():
            break
        parsed[todo] = pd.to_datetime(strings[todo], format=fmt, errors="coerce", utc=True)
    todo = parsed.isna() & strings.notna()
    if formats.detect and todo.any() and _mostly(column, todo.to_numpy(dtype=bool), strings.notna().to_numpy()):
        guessed, ambiguous = _day_month_formats(strings[todo])
        if ambiguous is not None:
            raise ambiguous
        by_format: dict[str, list[int]] = {}
        for position, fmt in guessed.items():
            by_format.setdefault(fmt, []).append(position)
        for fmt, positions in by_format.items():
            parsed.loc[positions] = pd.to_datetime(strings.loc[positions], format=fmt, errors="coerce", utc=True)
    return column.per_row(_naive_ns(parsed), nat)


def in_time_order(rows: np.ndarray, ticks: np.ndarray) -> np.ndarray:
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


def shared_times(ticks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def first_seen(labels: np.ndarray) -> np.ndarray:
    """True at the first row of each label; labels must first appear in increasing order (factorize)."""
    first = np.ones(len(labels), dtype=bool)
    if len(labels) > 1:
        first[1:] = labels[1:] > np.maximum.accumulate(labels)[:-1]
    return first


def duplicated_rows(columns: Sequence[Column], rows: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    """Exact repeats (all columns equal, as written) among ``rows``, the first occurrence not counted.

    ``rows`` are in stable time order and ``ticks`` are their parsed times. Equal values parse equally, so
    only rows sharing their time with another row can repeat one, and they follow file order within a time.
    The columns are compared on those rows only, already factorized ones first, narrowing after each column
    to the keys seen more than once: on ten million lines almost nothing is left after the customer.
    """
    pos, key = shared_times(ticks)
    for column in sorted(columns, key=lambda c: not c.factorized):
        if not len(pos):
            break
        codes, width = column.codes_at(rows[pos])
        key, _ = pd.factorize(key * (width + 1) + codes + 1)
        repeated = np.bincount(key)[key] > 1
        pos, key = pos[repeated], key[repeated]
    out = np.zeros(len(rows), dtype=bool)
    out[pos] = ~first_seen(key)
    return out
