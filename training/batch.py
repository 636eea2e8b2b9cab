"""`tailor recommend`: batch recommendations for e-mail campaigns, for every customer of a shop if asked.

Customers are scored in chunks with one matrix product each and ranked with a row-wise argpartition, so
the export runs at hundreds of thousands of rows per second instead of a Python loop per customer.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Collection, Iterable, Iterator
from typing import TextIO

import numpy as np
import pandas as pd

from scoring.artifact import Artifact
from scoring.history import PurchaseHistory
from training.evaluate import top_k

CHUNK_CELLS = 1 << 23  # scores materialised at once (rows x items): ~32 MB of float32, whatever the catalogue
HEADER = ("customer_id", "rank", "item_id", "score", "source")
#: ``source`` of a row: the customer's own ranking, or the popular list for a customer the model does not know.
SOURCE_PERSONALIZED = "personalized"
SOURCE_FALLBACK = "popular-fallback"


def read_customer_ids(lines: Iterable[str]) -> list[str]:
    """One id per line; blank lines and a leading ``customer_id`` header are ignored."""
    ids = [line.strip() for line in lines]
    ids = [i for i in ids if i]
    if ids and ids[0].lower() in {"customer_id", "customerid", "customer id"}:
        ids = ids[1:]
    return ids


def mask_purchased(scores: np.ndarray, history: PurchaseHistory) -> None:
    """Set already-bought items to -inf in place (discovery mode)."""
    rows, cols = history.orders.nonzero()
    scores[rows, cols] = -np.inf


def recommend_known(
    artifact: Artifact, rows: np.ndarray, n: int, exclude_purchased: bool, inactive: Collection[int] = ()
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (row positions into ``rows``, top items, scores) chunk by chunk; ``inactive`` items never."""
    chunk_rows = max(1, CHUNK_CELLS // max(1, len(artifact.item_ids)))
    never = np.fromiter(inactive, dtype=np.int64, count=len(inactive))
    for start in range(0, len(rows), chunk_rows):
        chunk = rows[start:start + chunk_rows]
        history = artifact.history.rows(chunk)
        scores = artifact.model.score(history).astype(np.float32, copy=False)
        if exclude_purchased:
            mask_purchased(scores, history)
        if len(never):
            scores[:, never] = -np.inf
        items = top_k(scores, n)
        yield np.arange(start, start + len(chunk)), items, np.take_along_axis(scores, items, axis=1)


def _known_frame(customers: np.ndarray, positions: np.ndarray, items: np.ndarray, scores: np.ndarray,
                 item_ids: np.ndarray) -> pd.DataFrame:
    """Rows of ranked known customers; ``positions`` (their place in the input) orders the output."""
    n = items.shape[1]
    valid = np.isfinite(scores)
    ranks = np.broadcast_to(np.arange(1, n + 1), items.shape)
    return pd.DataFrame({
        "position": np.repeat(positions, n)[valid.ravel()],
        "customer_id": np.repeat(customers, n)[valid.ravel()],
        "rank": ranks[valid],
        "item_id": item_ids[items[valid]],
        "score": np.round(scores[valid].astype(np.float64), 6),
        "source": SOURCE_PERSONALIZED,
    })


def _fallback_frame(customer_ids: np.ndarray, positions: np.ndarray, fallback: pd.DataFrame) -> pd.DataFrame:
    """The popularity fallback for the unknown customers at ``positions``."""
    n = len(fallback)
    return pd.DataFrame({
        "position": np.repeat(positions, n),
        "customer_id": np.repeat(customer_ids[positions], n),
        "rank": np.tile(fallback["rank"].to_numpy(), len(positions)),
        "item_id": np.tile(fallback["item_id"].to_numpy(), len(positions)),
        "score": np.tile(fallback["score"].to_numpy(), len(positions)),
        "source": SOURCE_FALLBACK,
    })


def export_recommendations(
    artifact: Artifact, customer_ids: list[str], n: int, exclude_purchased: bool, out: TextIO,
    progress: bool = False, inactive: Collection[int] = (),
) -> dict[str, int]:
    """Write ``customer_id,rank,item_id,score,source`` rows in the order customers were given; return counts.

    Known customers are ranked in chunks; the unknown ones get the popularity fallback at their place in the
    input, also when they sit between known customers of one chunk. ``inactive`` item indices (the service's
    deactivated items) are in no list, as the API never answers them.
    """
    from tqdm import tqdm

    index = pd.Index(artifact.customer_ids)
    positions = index.get_indexer(pd.Index(customer_ids, dtype=object))
    fallback = _fallback(artifact, n, inactive)
    ids = np.asarray(customer_ids, dtype=object)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    known = np.flatnonzero(positions >= 0)
    unknown = np.flatnonzero(positions < 0)
    rows_written = 0
    bar = tqdm(total=len(customer_ids), unit="customer", disable=not progress, file=sys.stderr)
    cursor = 0
    for local, items, scores in recommend_known(artifact, positions[known], n, exclude_purchased, inactive):
        block = known[local]
        end = int(block[-1]) + 1
        rows_written += _write(out, _known_frame(ids[block], block, items, scores, artifact.item_ids),
                               _fallback_frame(ids, unknown[(unknown >= cursor) & (unknown < end)], fallback))
        bar.update(end - cursor)
        cursor = end
    rows_written += _write(out, _fallback_frame(ids, unknown[unknown >= cursor], fallback))
    bar.update(len(customer_ids) - cursor)
    bar.close()
    return {"customers": len(customer_ids), "known": len(known), "fallback": len(unknown),
            "rows": rows_written}


def _write(out: TextIO, *frames: pd.DataFrame) -> int:
    """Write frames merged in input order (position, then rank); return the number of rows."""
    frame = pd.concat(frames, ignore_index=True).sort_values(["position", "rank"], kind="stable")
    frame.drop(columns="position").to_csv(out, header=False, index=False, lineterminator="\n")
    return len(frame)


def _fallback(artifact: Artifact, n: int, inactive: Collection[int] = ()) -> pd.DataFrame:
    popular = artifact.popular["global"]
    keep = [k for k, item in enumerate(popular["items"]) if item not in inactive][:n]
    top = np.asarray(popular["items"], dtype=np.int64)[keep]
    return pd.DataFrame({"rank": np.arange(1, len(top) + 1), "item_id": np.asarray(artifact.item_ids)[top],
                         "score": np.asarray(popular["recent_buyers"], dtype=np.float64)[keep]})


def open_lines(path: str) -> Iterable[str]:
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")
