"""The cleaning rules and their report: every dropped row counted once, by the first rule that applies
(the order is in ``training.data``'s docstring)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from training.data.columns import HINTS, ITEM_COLUMNS, ColumnNames, found_columns, resolve_columns, segment_key
from training.data.errors import DataError
from training.data.parsing import (
    ONLINE_RETAIL_TIME_FORMATS,
    AmbiguousDates,
    Column,
    TimeFormats,
    duplicated_rows,
    first_seen,
    in_time_order,
    parse_numbers,
    parse_timestamps,
    shared_times,
)
from training.data.readers import file_line, release_memory

#: Stock codes of the Online Retail data that are bookings, not products (compared upper-cased).
NON_PRODUCT_CODES = frozenset({
    "POST", "DOT", "M", "D", "C2", "CRUK", "PADS", "B", "S", "AMAZONFEE", "BANK CHARGES",
})


#: Prefixes of non-product stock codes (gift vouchers: ``gift_0001_10`` ...).
NON_PRODUCT_PREFIXES = ("GIFT_",)


#: Test bookings of Online Retail II (``TEST001``, ``TEST002`` ...): digits, so the no-digit rule misses them.
NON_PRODUCT_PATTERN = r"^TEST\d+$"


# Fields whose codes and distinct values build the output (the other columns are only parsed or compared).
_OUTPUT_FIELDS = ("customer", "item", "order", "country", "title", "category")


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


def is_non_product(codes: pd.Series) -> pd.Series:
    """Online Retail stock codes that are postage, fees, discounts, samples or vouchers, not products.

    Real product codes contain digits (``85123A``, ``15056BL``); bookings are words (``POST``, ``DOT``,
    ``AMAZONFEE``) plus a few known coded ones (``C2`` carriage, ``gift_0001_10`` vouchers). The
    no-digit rule also drops the two web-shop party bags ``DCGSSBOY``/``DCGSSGIRL`` (24 lines, none with
    a customer), and the test codes of Online Retail II (``TEST001``, ``TEST002``). Empty codes are not
    matched (they are counted as unparseable instead).
    """
    upper = codes.str.upper()
    present = upper.notna()
    known = (upper.isin(list(NON_PRODUCT_CODES)) | upper.str.startswith(NON_PRODUCT_PREFIXES)
             | upper.str.match(NON_PRODUCT_PATTERN))
    no_digit = ~upper.str.contains(r"\d", regex=True)
    return (present & (known.fillna(False) | no_digit.fillna(False))).astype(bool)


def clean_rows(
    raw: pd.DataFrame,
    path: str,
    kind: str,
    encoding: str,
    sep: str,
    fmt: str,
    names: ColumnNames,
    until: datetime | None,
    max_bad_rows: float,
    time_format: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, DataQualityReport]:
    n = len(raw)
    if n == 0:
        raise DataError(f"{path}: no data rows (header only); columns found: {found_columns(list(raw.columns))}")
    col = resolve_columns(raw, path, fmt, names)
    retail = fmt == "online-retail"
    every = [Column(raw.iloc[:, j]) for j in range(raw.shape[1])]
    by_name: dict[str, Column] = {}
    for name, column in zip(raw.columns, every, strict=True):
        by_name.setdefault(name, column)
    field_of = {key: by_name[name] for key, name in col.items()}

    customer = field_of["customer"]
    customer_u = customer.text.str.replace(r"^(\d+)\.0+$", r"\1", regex=True)  # Excel: 17850.0 -> 17850
    item = field_of["item"]
    item_u = item.text.str.upper() if retail else item.text  # 85123a == 85123A in Online Retail
    formats = TimeFormats(explicit=time_format, fallbacks=ONLINE_RETAIL_TIME_FORMATS if retail else (),
                          detect=not retail)
    try:
        time_values = parse_timestamps(field_of["time"], formats)
    except AmbiguousDates as ambiguous:
        _ambiguous_dates(path, kind, encoding, sep, col["time"], field_of["time"], ambiguous)
    bad_time = np.isnat(time_values)
    if "quantity" in field_of:
        quantity, bad_quantity, q_blank = parse_numbers(field_of["quantity"])
        quantity[q_blank] = 1.0  # blank -> 1
    else:
        quantity, bad_quantity = np.ones(n), np.zeros(n, dtype=bool)
    if "price" in field_of:
        price, bad_price, _ = parse_numbers(field_of["price"])
    else:
        price, bad_price = np.full(n, np.nan), np.zeros(n, dtype=bool)

    # 1-6: each rule only sees the rows the earlier rules left (module docstring).
    alive = ~customer.per_row(customer_u.isna().to_numpy(dtype=bool), True)
    missing_customer = n - int(alive.sum())

    returns = quantity <= 0
    if retail and "order" in field_of:
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
    used = {key: column for key, column in field_of.items()
            if key in _OUTPUT_FIELDS or key.startswith(segment_key(""))}
    for column in used.values():
        column.detach()
    release_memory()

    # Sorted by time once, here: duplicate detection uses the order, and the output keeps it.
    ticks = time_values.view(np.int64)
    keep = in_time_order(np.flatnonzero(alive), ticks)
    duplicate = np.zeros(n, dtype=bool)
    if retail or "order" in col or "quantity" in col:  # else a repeated line is one more unit bought
        duplicate[keep] = duplicated_rows(every, keep, ticks[keep])
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
        _too_many_bad(raw, path, kind, encoding, sep, n, bad_by_column, max_bad_rows, time_format, retail)

    # Only codes and parsed values are used from here on: free the raw table before the output is built.
    del raw, every, by_name, field_of
    release_memory()

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
            generic = "order-" + _day_baskets(customer.codes[keep], timestamps.view(np.int64)).astype("str")
            order_id = order_id.fillna(generic)
    else:
        order_id = _day_baskets(customer.codes[keep], timestamps.view(np.int64))
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
        **{key: column.strings(column.text, keep) for key, column in used.items()
           if key.startswith(segment_key(""))},
    }, copy=False)  # the arrays are fresh: copying (and consolidating) them only costs memory
    items = _items(item, item_u, keep, price, {k: used.get(k) for k in ("title", "category")})
    return interactions, items, report


_NS_PER_DAY = 86_400 * 10**9


def _day_baskets(customer_codes: np.ndarray, ticks: np.ndarray) -> pd.Series:
    """Without a basket column (``--basket-col``) a basket is one customer's purchases of one calendar day.

    The baskets are numbered (int64, by first appearance) rather than spelled out as strings: on ten million
    lines the strings cost tens of seconds and gigabytes, and downstream only counts distinct baskets. Rows
    come in time order (``ticks``), so a line alone on its day is a basket of its own and only the lines
    sharing a day with another line need hashing.
    """
    pos, runs = shared_times(ticks // _NS_PER_DAY)
    width = int(customer_codes.max()) + 2 if len(customer_codes) else 1
    labels, _ = pd.factorize(runs * width + customer_codes[pos] + 1)
    first = np.ones(len(ticks), dtype=bool)
    first[pos] = first_seen(labels)
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
    item: Column, item_u: pd.Series, keep: np.ndarray, price: np.ndarray, extra: dict[str, Column | None]
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
    time_format: str | None = None,
    retail: bool = False,
) -> None:
    """Reject the file naming the worst column, its first bad line and value (usually a wrong mapping)."""
    what, (column, mask) = max(bad_by_column.items(), key=lambda kv: int(kv[1][1].sum()))
    count = int(mask.sum())
    first = int(np.flatnonzero(mask)[0])
    value = raw.iloc[first, list(raw.columns).index(column)]  # first of equally named columns, as parsed
    shown = "(empty)" if pd.isna(value) or str(value).strip() == "" else repr(str(value)[:60])
    where = f"row {first + 1}" if kind == "parquet" else f"line {file_line(path, kind, encoding, sep, first)}"
    noun = {"timestamp": "timestamp", "quantity": "quantity", "price": "price", "item": "item id"}[what]
    raise DataError(
        f"{path}: {count:,} of {n:,} rows ({100.0 * count / n:.1f}%) have an unparseable {noun} in "
        f"column {column!r}, first at {where}: {shown} — {_hint(what, value, time_format, count, n, retail)} "
        f"(limit {100.0 * max_bad_rows:g}%)"
    )


def _hint(what: str, value: object, time_format: str | None, count: int, n: int, retail: bool) -> str:
    """What to try: only flags that exist (``tailor/parser.py``) and apply to the file's ``--format`` (the
    ``--*-col`` flags do not apply to the Online Retail layout, whose column names are fixed)."""
    if what != "timestamp":
        flag = HINTS[what].removeprefix("wrong ").rstrip("?")
        return (f"not the Online Retail layout? Read other files with --format generic and {flag}" if retail
                else HINTS[what])
    or_time_col = "" if retail else "wrong --time-col, or "  # the Online Retail layout's column is fixed
    if time_format is not None:
        return f"{or_time_col}does --time-format {time_format!r} not match?"
    text = "" if pd.isna(value) else str(value).strip()
    if text and text.replace(".", "", 1).lstrip("-").isdigit():
        return f"{'' if retail else 'wrong --time-col? '}Unix times need --time-format epoch or --time-format epoch-ms"
    if 2 * count > n or retail:  # most rows (or a fixed layout): the dates are written in another layout
        return f"{or_time_col}give the layout with --time-format (strftime, e.g. '%d.%m.%Y %H:%M')?"
    return HINTS[what]


def _ambiguous_dates(path: str, kind: str, encoding: str, sep: str, name: str,
                     column: Column, ambiguous: AmbiguousDates) -> None:
    """Dates like 03/04/2024 throughout: refuse to guess, name both readings and the flag choosing one."""
    first = int(np.flatnonzero(column.codes == ambiguous.value)[0])
    value = str(column.uniques.iloc[ambiguous.value]).strip()
    where = f"row {first + 1}" if kind == "parquet" else f"line {file_line(path, kind, encoding, sep, first)}"
    day_first, month_first = ambiguous.candidates
    raise DataError(
        f"{path}: dates in column {name!r} read as day/month and as month/day (no day above 12), first at "
        f"{where}: {value!r} — give --time-format '{day_first}' or --time-format '{month_first}'"
    )
