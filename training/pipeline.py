"""The training job as phases: read -> matrix -> fit -> evaluate -> write, each timed and measured.

The CLI, the retraining job and the benchmarks all run this one pipeline, so what is benchmarked is what
ships.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scoring.artifact import (
    FORMAT_VERSION,
    Artifact,
    CustomerTable,
    library_versions,
    new_version_id,
    utc_now,
)
from scoring.embeddings import item_embeddings
from scoring.history import PurchaseHistory, to_day
from scoring.models import create
from scoring.models.base import Recommender
from scoring.threads import limit_blas_threads
from training.data import PurchaseLog
from training.matrix import build_history

POPULAR_LIST_LENGTH = 200
POPULAR_WINDOW_DAYS = 90
MIN_COUNTRY_CUSTOMERS = 10  # a country or segment value gets its own popular list from this many customers
SEGMENT_PREFIX = "segment:"  # interactions columns of the --segment-col columns (training.data.segment_key)


@dataclass
class PhaseTimer:
    """Wall time and peak RSS per phase; printed as it goes unless quiet."""

    quiet: bool = False
    phases: list[dict[str, Any]] = field(default_factory=list)

    @contextmanager
    def phase(self, name: str, detail: str = "") -> Iterator[dict[str, Any]]:
        info: dict[str, Any] = {"phase": name}
        start = time.perf_counter()
        children_before = peak_rss_mb(resource.RUSAGE_CHILDREN)
        yield info
        info["seconds"] = round(time.perf_counter() - start, 3)
        info["peak_rss_mb"] = round(peak_rss_mb(), 1)
        children = peak_rss_mb(resource.RUSAGE_CHILDREN)
        if children > children_before:  # the search runs in a child process (training.bounded), beside this one
            info["child_peak_rss_mb"] = round(children, 1)
        self.phases.append(info)
        if not self.quiet:
            note = info.get("detail", detail)
            child = f" + {info['child_peak_rss_mb']:,.0f} MB child" if "child_peak_rss_mb" in info else ""
            print(f"  {name:<9} {info['seconds']:7.2f}s  peak {info['peak_rss_mb']:7.0f} MB{child}  {note}",
                  file=sys.stderr, flush=True)


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident memory (MB) of this process, or (``RUSAGE_CHILDREN``) of its largest waited-for child."""
    return resource.getrusage(who).ru_maxrss / 1024.0


def _main_value(rows: np.ndarray, values: pd.Series, n: int) -> tuple[np.ndarray, list[str]]:
    """Per customer row: the index of the value most of its purchase lines name (-1: none), and the values."""
    index = np.full(n, -1, dtype=np.int32)
    if not values.notna().any():
        return index, []
    codes, uniques = pd.factorize(values)
    known = codes >= 0
    pairs = pd.DataFrame({"row": rows[known], "value": codes[known]})
    counts = pairs.value_counts(sort=True)
    main = counts[~counts.index.get_level_values("row").duplicated()]
    index[main.index.get_level_values("row")] = main.index.get_level_values("value")
    return index, [str(v) for v in uniques]


def customer_table(interactions: pd.DataFrame, customer_ids: np.ndarray, history: PurchaseHistory) -> CustomerTable:
    """Orders, spend, first/last purchase, main country and main value of each segment column per customer,
    aligned with ``customer_ids``."""
    df = interactions
    rows = pd.Index(customer_ids).get_indexer(df["customer_id"])
    n = len(customer_ids)
    spend = np.bincount(rows, weights=(df["quantity"] * df["price"]).fillna(0.0).to_numpy(), minlength=n)
    orders = pd.DataFrame({"row": rows, "order": df["order_id"].to_numpy()}).drop_duplicates()
    order_counts = np.bincount(orders["row"].to_numpy(), minlength=n).astype(np.int32)
    days = to_day(df["timestamp"])
    first_day = np.full(n, np.inf)
    np.minimum.at(first_day, rows, days)
    last_day = history.last_day.max(axis=1).toarray().ravel().astype(np.float64)  # already in the history
    # The main country (segment value) is the one most of a customer's purchase lines name.
    country_idx, countries = (_main_value(rows, df["country"], n) if "country" in df
                              else (np.full(n, -1, dtype=np.int32), []))
    segments: dict[str, list[str]] = {}
    segment = np.full((n, 0), -1, dtype=np.int32)
    names = [c for c in df.columns if isinstance(c, str) and c.startswith(SEGMENT_PREFIX)]
    if names:
        segment = np.full((n, len(names)), -1, dtype=np.int32)
        for j, column in enumerate(names):
            segment[:, j], segments[column[len(SEGMENT_PREFIX):]] = _main_value(rows, df[column], n)
    return CustomerTable(orders=order_counts, spend=spend.round(2), first_day=first_day, last_day=last_day,
                         country=country_idx, countries=countries, segments=segments, segment=segment)


def item_metadata(items: pd.DataFrame, item_ids: np.ndarray) -> list[dict[str, Any]]:
    """Title, price and category per model item, JSON-ready (missing values become null)."""
    meta = items.drop_duplicates("item_id").set_index("item_id").reindex(item_ids)
    out = []
    for item_id, row in zip(item_ids, meta.itertuples(index=False), strict=True):
        price = getattr(row, "price", None)
        out.append({
            "item_id": str(item_id),
            "title": None if pd.isna(getattr(row, "title", None)) else str(row.title),
            "price": None if price is None or pd.isna(price) else round(float(price), 4),
            "category": None if pd.isna(getattr(row, "category", None)) else str(row.category),
        })
    return out


def popular_lists(history: PurchaseHistory, customers: CustomerTable) -> dict[str, Any]:
    """Fallback rankings by distinct buyers in the last 90 days (all time breaks ties): global, per country and
    per value of each segment column, for values with at least ``MIN_COUNTRY_CUSTOMERS`` customers.

    Recent popularity is used because retail demand is seasonal: last year's bestsellers are a poor
    fallback in December.
    """
    bought = history.orders.copy()
    bought.data = np.ones_like(bought.data)
    recent = history.last_day.copy()
    recent.data = (recent.data >= history.now_day - POPULAR_WINDOW_DAYS).astype(np.float32)
    recent.eliminate_zeros()

    def ranking(rows: np.ndarray | slice) -> dict[str, list]:
        total = np.asarray(bought[rows].sum(axis=0)).ravel()
        recent_buyers = np.asarray(recent[rows].sum(axis=0)).ravel()
        order = np.lexsort((-total, -recent_buyers))
        order = order[total[order] > 0][:POPULAR_LIST_LENGTH]
        return {"items": order.tolist(), "recent_buyers": recent_buyers[order].astype(int).tolist()}

    def by_value(index: np.ndarray, values: list[str]) -> dict[str, dict[str, list]]:
        lists: dict[str, dict[str, list]] = {}
        for code, value in enumerate(values):
            rows = np.flatnonzero(index == code)
            if len(rows) >= MIN_COUNTRY_CUSTOMERS:
                lists[value] = ranking(rows)
        return lists

    by_segment = {name: by_value(customers.segment[:, j], values)
                  for j, (name, values) in enumerate(customers.segments.items())}
    return {"window_days": POPULAR_WINDOW_DAYS, "global": ranking(slice(None)),
            "by_country": by_value(customers.country, customers.countries), "by_segment": by_segment}


def train_artifact(
    log: PurchaseLog,
    algorithm: str,
    params: dict[str, Any],
    *,
    timer: PhaseTimer,
    evaluation: dict[str, Any] | None = None,
    until: str | None = None,
    tuning: dict[str, Any] | None = None,
    model: Recommender | None = None,
    engine: dict[str, Any] | None = None,
) -> Artifact:
    """Fit ``algorithm`` on the whole (cleaned) log and bundle everything the service needs.

    ``model``: an unfitted instance to fit instead of ``create(algorithm, **params)`` (``--engine spark``);
    ``engine``: what fitted it, recorded in the manifest (default ``{"name": "local"}``: this process)."""
    interactions = log.interactions
    with timer.phase("matrix") as info:
        history, customer_ids, item_ids = build_history(interactions)
        info["detail"] = f"{len(customer_ids):,} customers x {len(item_ids):,} items, {history.orders.nnz:,} pairs"
    with timer.phase("fit") as info, limit_blas_threads():
        model = model if model is not None else create(algorithm, **params)
        model.fit(history, progress=not timer.quiet)
        info["detail"] = algorithm
    with timer.phase("extras"):
        customers = customer_table(interactions, customer_ids, history)
        items = item_metadata(log.items, item_ids)
        popular = popular_lists(history, customers)
        embeddings = item_embeddings(history)
    created_at = utc_now()
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "version": new_version_id(created_at, log.fingerprint),
        "created_at": created_at.isoformat().replace("+00:00", "Z"),
        "algorithm": algorithm,
        "params": model.params,
        "engine": {"name": "local", **(engine or {})},
        "data": {
            "source": str(log.source),
            "fingerprint_sha256": log.fingerprint,
            "until": until,
            "first_timestamp": interactions["timestamp"].min().isoformat(),
            "last_timestamp": interactions["timestamp"].max().isoformat(),
            "quality": log.report.to_dict(),
        },
        "counts": {
            "customers": len(customer_ids),
            "items": len(item_ids),
            "interactions": len(interactions),
            "customer_item_pairs": int(history.orders.nnz),
        },
        "evaluation": evaluation,
        "tuning": tuning,
        "libraries": library_versions(),
        "phases": timer.phases,
    }
    return Artifact(manifest, model, history, customer_ids, item_ids, customers, items, popular, embeddings)
