"""`tailor recommend`: batch recommendations for e-mail campaigns, for every customer of a shop if asked.

Customers are scored in chunks with one matrix product each and ranked with a row-wise argpartition, so
the export runs at hundreds of thousands of rows per second instead of a Python loop per customer.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TextIO

import numpy as np
import pandas as pd

from scoring.artifact import Artifact
from scoring.history import CustomerRow, PurchaseHistory
from training.data import DataError
from training.evaluate import top_k

CHUNK_CELLS = 1 << 23  # scores materialised at once (rows x items): ~32 MB of float32, whatever the catalogue
HEADER = ("customer_id", "rank", "item_id", "score", "source")
#: ``source`` of a row: the customer's own ranking, or the popular list for a customer the model does not know.
SOURCE_PERSONALIZED = "personalized"
SOURCE_FALLBACK = "popular-fallback"
NO_ITEMS = np.empty(0, dtype=np.int64)


@dataclass(frozen=True)
class LiveRow:
    """A customer scored from a row built beyond the model directory: what the service received since training
    (``tailor recommend --redis-url``), as the API would score it."""

    history: CustomerRow
    blocked: np.ndarray  # item indices left out of this customer's list
    source: str  # "personalized", or "session" for a customer the model does not know


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
    artifact: Artifact, rows: np.ndarray, n: int, exclude_purchased: bool, never: np.ndarray = NO_ITEMS,
    now_day: float | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (row positions into ``rows``, top items, scores) chunk by chunk; the items of ``never`` never.
    ``now_day``: "now" for recency (default: the end of the model's data, the service's ``data`` clock)."""
    chunk_rows = max(1, CHUNK_CELLS // max(1, len(artifact.item_ids)))
    for start in range(0, len(rows), chunk_rows):
        chunk = rows[start:start + chunk_rows]
        history = artifact.history.rows(chunk)
        if now_day is not None:
            history = replace(history, now_day=now_day)
        scores = artifact.model.score(history).astype(np.float32, copy=False)
        if exclude_purchased:
            mask_purchased(scores, history)
        if len(never):
            scores[:, never] = -np.inf
        items = top_k(scores, n)
        yield np.arange(start, start + len(chunk)), items, np.take_along_axis(scores, items, axis=1)


def _known_frame(customers: np.ndarray, positions: np.ndarray, items: np.ndarray, scores: np.ndarray,
                 item_ids: np.ndarray, sources: str | np.ndarray = SOURCE_PERSONALIZED) -> pd.DataFrame:
    """Rows of ranked customers; ``positions`` (their place in the input) orders the output; ``sources``: one
    for all, or one per customer."""
    n = items.shape[1]
    valid = np.isfinite(scores)
    ranks = np.broadcast_to(np.arange(1, n + 1), items.shape)
    return pd.DataFrame({
        "position": np.repeat(positions, n)[valid.ravel()],
        "customer_id": np.repeat(customers, n)[valid.ravel()],
        "rank": ranks[valid],
        "item_id": item_ids[items[valid]],
        "score": np.round(scores[valid].astype(np.float64), 6),
        "source": np.repeat(sources, n)[valid.ravel()] if isinstance(sources, np.ndarray) else sources,
    })


def _live_frame(artifact: Artifact, customer_ids: np.ndarray, positions: np.ndarray, live: Mapping[str, LiveRow],
                n: int, never: np.ndarray) -> pd.DataFrame:
    """Rows of the customers at ``positions``, each scored from their ``LiveRow`` one at a time (they are few:
    the customers the service heard from since training)."""
    if not len(positions):
        return _known_frame(customer_ids[positions], positions, np.empty((0, n), dtype=np.int64),
                            np.empty((0, n), dtype=np.float32), artifact.item_ids)
    width = min(n, len(artifact.item_ids))
    items = np.empty((len(positions), width), dtype=np.int64)
    scores = np.empty((len(positions), width), dtype=np.float32)
    for k, position in enumerate(positions.tolist()):
        row = live[customer_ids[position]]
        scored = np.array(artifact.model.score_row(row.history), dtype=np.float32).reshape(1, -1)
        scored[0, row.blocked] = -np.inf
        scored[0, never] = -np.inf
        items[k] = top_k(scored, width)[0]
        scores[k] = scored[0, items[k]]
    sources = np.asarray([live[customer_ids[p]].source for p in positions.tolist()], dtype=object)
    return _known_frame(customer_ids[positions], positions, items, scores, artifact.item_ids, sources)


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
    progress: bool = False, inactive: Collection[int] = (), live: Mapping[str, LiveRow] | None = None,
    now_day: float | None = None,
) -> dict[str, int]:
    """Write ``customer_id,rank,item_id,score,source`` rows in the order customers were given; return counts.

    Known customers are ranked in chunks; the unknown ones get the popularity fallback at their place in the
    input, also when they sit between known customers of one chunk. ``inactive`` item indices (the service's
    deactivated items) are in no list, as the API never answers them. Customers in ``live`` are scored from
    their ``LiveRow`` instead (the exclusion of purchases is in its ``blocked``). ``now_day``: as in
    ``recommend_known`` (the service's ``wall`` clock passes the time of the export).
    """
    from tqdm import tqdm

    live = live or {}
    index = pd.Index(artifact.customer_ids)
    positions = index.get_indexer(pd.Index(customer_ids, dtype=object))
    fallback = _fallback(artifact, n, inactive)
    ids = np.asarray(customer_ids, dtype=object)
    from_live = (np.fromiter((i in live for i in customer_ids), dtype=bool, count=len(customer_ids)) if live
                 else np.zeros(len(customer_ids), dtype=bool))
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    known = np.flatnonzero((positions >= 0) & ~from_live)
    unknown = np.flatnonzero((positions < 0) & ~from_live)
    scored_live = np.flatnonzero(from_live)
    never = np.fromiter(inactive, dtype=np.int64, count=len(inactive))
    rows_written = 0
    bar = tqdm(total=len(customer_ids), unit="customer", disable=not progress, file=sys.stderr)
    cursor = 0
    for local, items, scores in recommend_known(artifact, positions[known], n, exclude_purchased, never, now_day):
        block = known[local]
        end = int(block[-1]) + 1
        rows_written += _write(out, _known_frame(ids[block], block, items, scores, artifact.item_ids),
                               _fallback_frame(ids, unknown[(unknown >= cursor) & (unknown < end)], fallback),
                               _live_frame(artifact, ids, scored_live[(scored_live >= cursor) & (scored_live < end)],
                                           live, n, never))
        bar.update(end - cursor)
        cursor = end
    rows_written += _write(out, _fallback_frame(ids, unknown[unknown >= cursor], fallback),
                           _live_frame(artifact, ids, scored_live[scored_live >= cursor], live, n, never))
    bar.update(len(customer_ids) - cursor)
    bar.close()
    return {"customers": len(customer_ids), "known": int(np.count_nonzero(positions >= 0)),
            "fallback": len(unknown), "live": len(scored_live), "rows": rows_written}


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


def open_lines(path: str) -> Iterator[str]:
    """The lines of a customers file (``-``: standard input) as UTF-8 text, a leading byte-order mark dropped
    (spreadsheets write one: it would have made the first customer unknown). A line that is not UTF-8 stops
    the run, naming it, instead of becoming an id with U+FFFD in it that matches no customer."""
    raw = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    try:
        for number, line in enumerate(raw, start=1):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                where = "standard input" if path == "-" else path
                raise DataError(f"{where}: line {number} is not UTF-8 text (byte {exc.start + 1}); save the "
                                "customers file as UTF-8") from None
            yield text.removeprefix("\ufeff") if number == 1 else text
    finally:
        if raw is not sys.stdin.buffer:
            raw.close()
