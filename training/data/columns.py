"""Column mapping: which column of a file holds the customer, the item, the time... for each format."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from training.data.errors import DataError

FORMATS = ("generic", "online-retail")


INTERACTION_COLUMNS = ("customer_id", "item_id", "timestamp", "quantity", "price", "order_id", "country")


ITEM_COLUMNS = ("item_id", "title", "price", "category")


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


# Column of the bad-rows check -> what to suggest.
HINTS = {
    "timestamp": "wrong --time-col, or rows in a date layout other than ISO 8601 (give it with --time-format)?",
    "quantity": "wrong --quantity-col?",
    "price": "wrong --price-col?",
    "item": "wrong --item-col?",
}


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
    basket: str | None = None  # invoice / order id; without one a basket is a customer's calendar day
    segments: tuple[str, ...] = ()  # customer segments (age group, area ...): popular lists and profiles


def segment_key(name: str) -> str:
    """The logical field (and interactions column) of segment column ``name``."""
    return f"segment:{name}"


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


def found_columns(columns: Sequence[str]) -> str:
    shown = ", ".join(repr(c) for c in columns[:20])
    return shown + (f", ... ({len(columns)} in all)" if len(columns) > 20 else "")


def resolve_columns(raw: pd.DataFrame, path: str, fmt: str, names: ColumnNames) -> dict[str, str]:
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
                    f"columns found: {found_columns(cols)}{hint}"
                )
        return _extra_columns(cols, path, resolved, (), names.segments)
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
            raise DataError(f"{path}: {kind} {wanted!r} not found; columns found: {found_columns(cols)}{hint}")
    return _extra_columns(cols, path, resolved, (names.basket,) if names.basket else (), names.segments)


def _extra_columns(cols: list[str], path: str, resolved: dict[str, str], basket: tuple[str, ...],
                   segments: tuple[str, ...]) -> dict[str, str]:
    """Add the ``--basket-col`` (generic format) and ``--segment-col`` columns, which must exist."""
    wanted = [("order", name, "--basket-col") for name in basket]
    wanted += [(segment_key(name), name, "--segment-col") for name in segments]
    for key, name, flag in wanted:
        hit = _find(cols, (name,), loose=False)
        if hit is None:
            raise DataError(f"{path}: column {name!r} ({flag}) not found; columns found: {found_columns(cols)}")
        resolved[key] = hit
    return resolved


def check_segments(names: ColumnNames) -> None:
    """Segment names must be distinct and not the country column, which already is a segment."""
    seen: set[str] = set()
    for name in names.segments:
        if not name.strip():
            raise DataError("--segment-col needs a column name")
        if name == names.country:
            raise DataError(f"--segment-col {name!r} is the country column, already used for segments "
                            "(--country-col)")
        if name in seen:
            raise DataError(f"--segment-col {name!r} given twice")
        seen.add(name)
