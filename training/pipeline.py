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

from training.artifact import (
    FORMAT_VERSION,
    Artifact,
    CustomerTable,
    library_versions,
    new_version_id,
    utc_now,
)
from training.data import PurchaseLog
from training.embeddings import item_embeddings
from training.history import to_day
from training.matrix import build_history
from training.models import create
from training.threads import limit_blas_threads

POPULAR_LIST_LENGTH = 200
POPULAR_WINDOW_DAYS = 90
MIN_COUNTRY_CUSTOMERS = 10


@dataclass
class PhaseTimer:
    """Wall time and peak RSS per phase; printed as it goes unless quiet."""

    quiet: bool = False
    phases: list[dict[str, Any]] = field(default_factory=list)

    @contextmanager
    def phase(self, name: str, detail: str = "") -> Iterator[dict[str, Any]]:
        info: dict[str, Any] = {"phase": name}
        start = time.perf_counter()
        yield info
        info["seconds"] = round(time.perf_counter() - start, 3)
        info["peak_rss_mb"] = round(peak_rss_mb(), 1)
        self.phases.append(info)
        if not self.quiet:
            note = info.get("detail", detail)
            print(f"  {name:<9} {info['seconds']:7.2f}s  peak {info['peak_rss_mb']:7.0f} MB  {note}",
                  file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def customer_table(interactions: pd.DataFrame, customer_ids: np.ndarray) -> CustomerTable:
    """Orders, spend, first/last purchase and main country per customer, aligned with ``customer_ids``."""
    df = interactions
    spend = (df["quantity"] * df["price"]).fillna(0.0)
    grouped = df.assign(spend=spend).groupby("customer_id", sort=False)
    agg = grouped.agg(
        orders=("order_id", "nunique"), spend=("spend", "sum"),
        first=("timestamp", "min"), last=("timestamp", "max"),
    ).reindex(customer_ids)
    countries: list[str] = []
    country_idx = np.full(len(customer_ids), -1, dtype=np.int32)
    if "country" in df and df["country"].notna().any():
        main = df.dropna(subset=["country"]).groupby("customer_id", sort=False)["country"].agg(
            lambda s: s.value_counts().index[0]
        )
        codes, uniques = pd.factorize(main.reindex(customer_ids))
        countries = [str(c) for c in uniques]
        country_idx = codes.astype(np.int32)
    return CustomerTable(
        orders=agg["orders"].to_numpy(dtype=np.int32),
        spend=agg["spend"].to_numpy(dtype=np.float64).round(2),
        first_day=to_day(agg["first"]),
        last_day=to_day(agg["last"]),
        country=country_idx,
        countries=countries,
    )


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


def popular_lists(interactions: pd.DataFrame, item_ids: np.ndarray) -> dict[str, Any]:
    """Fallback rankings by distinct buyers in the last 90 days (all time breaks ties), global and per country.

    Recent popularity is used because retail demand is seasonal: last year's bestsellers are a poor
    fallback in December.
    """
    index = pd.Index(item_ids)
    recent_start = interactions["timestamp"].max() - pd.Timedelta(days=POPULAR_WINDOW_DAYS)

    def ranking(df: pd.DataFrame) -> dict[str, list]:
        total = df.groupby("item_id")["customer_id"].nunique()
        recent = df[df["timestamp"] >= recent_start].groupby("item_id")["customer_id"].nunique()
        table = pd.DataFrame({"recent": recent, "total": total}).fillna(0)
        table = table.sort_values(["recent", "total"], ascending=False, kind="stable").head(POPULAR_LIST_LENGTH)
        positions = index.get_indexer(table.index)
        keep = positions >= 0
        return {
            "items": [int(p) for p in positions[keep]],
            "recent_buyers": [int(x) for x in table["recent"].to_numpy()[keep]],
        }

    by_country: dict[str, dict[str, list]] = {}
    if "country" in interactions and interactions["country"].notna().any():
        buyers = interactions.groupby("country")["customer_id"].nunique()
        for country in buyers[buyers >= MIN_COUNTRY_CUSTOMERS].index:
            by_country[str(country)] = ranking(interactions[interactions["country"] == country])
    return {"window_days": POPULAR_WINDOW_DAYS, "global": ranking(interactions), "by_country": by_country}


def train_artifact(
    log: PurchaseLog,
    algorithm: str,
    params: dict[str, Any],
    *,
    timer: PhaseTimer,
    evaluation: dict[str, Any] | None = None,
    until: str | None = None,
) -> Artifact:
    """Fit ``algorithm`` on the whole (cleaned) log and bundle everything the service needs."""
    interactions = log.interactions
    with timer.phase("matrix") as info:
        history, customer_ids, item_ids = build_history(interactions)
        info["detail"] = f"{len(customer_ids):,} customers x {len(item_ids):,} items, {history.orders.nnz:,} pairs"
    with timer.phase("fit") as info, limit_blas_threads():
        model = create(algorithm, **params)
        model.fit(history, progress=not timer.quiet)
        info["detail"] = algorithm
    with timer.phase("extras"):
        customers = customer_table(interactions, customer_ids)
        items = item_metadata(log.items, item_ids)
        popular = popular_lists(interactions, item_ids)
        embeddings = item_embeddings(history)
    created_at = utc_now()
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "version": new_version_id(created_at, log.fingerprint),
        "created_at": created_at.isoformat().replace("+00:00", "Z"),
        "algorithm": algorithm,
        "params": model.params,
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
        "libraries": library_versions(),
        "phases": timer.phases,
    }
    return Artifact(manifest, model, history, customer_ids, item_ids, customers, items, popular, embeddings)
