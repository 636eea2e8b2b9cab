"""The feedback loop: purchases the service received as events, read back from the Redis stream.

The service appends every accepted event to ``keys.EVENTS_STREAM`` with string fields ``event_id,
customer_id, item_id, type, timestamp (ISO 8601), quantity, price``; here the purchases among them become
extra rows of the purchase log, so a retrained model learns from what happened since the last export.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import redis

from redis_state import keys
from redis_state.versions import PublishError, connect
from training.data import DataError, PurchaseLog

READ_BATCH = 10_000


def read_stream_purchases(client: redis.Redis, until: datetime | None = None) -> pd.DataFrame:
    """Purchase events of the stream as purchase-log rows (order_id = the event id)."""
    rows: list[dict[str, str]] = []
    start = "-"
    while True:
        entries = client.xrange(keys.EVENTS_STREAM, min=start, max="+", count=READ_BATCH)
        for entry_id, fields in entries:
            event = {k.decode(): v.decode("utf-8", "replace") for k, v in fields.items()}
            if event.get("type") == "purchase" and event.get("item_id") and event.get("customer_id"):
                rows.append(event)
            start = "(" + entry_id.decode()
        if len(entries) < READ_BATCH:
            break
    frame = pd.DataFrame(rows, columns=["event_id", "customer_id", "item_id", "timestamp", "quantity", "price"])
    timestamps = pd.to_datetime(frame["timestamp"], utc=True, errors="coerce", format="ISO8601")
    out = pd.DataFrame({
        "customer_id": frame["customer_id"].astype(str),
        "item_id": frame["item_id"].astype(str),
        "timestamp": timestamps.dt.tz_localize(None).astype("datetime64[ns]"),
        "quantity": pd.to_numeric(frame["quantity"], errors="coerce").fillna(1.0).astype("float64"),
        "price": pd.to_numeric(frame["price"], errors="coerce").astype("float64"),
        "order_id": "event:" + frame["event_id"].astype(str),
        "country": pd.Series(pd.NA, index=frame.index, dtype="object"),
    })
    # A batch retried by a client after a half-failed write can repeat an event (customer + event id).
    out = out[out["timestamp"].notna() & (out["quantity"] > 0)].drop_duplicates(["customer_id", "order_id"])
    if until is not None:
        out = out[out["timestamp"] < pd.Timestamp(until)]
    return out


def append_stream_purchases(log: PurchaseLog, redis_url: str, until: datetime | None = None) -> PurchaseLog:
    """``log`` plus the purchases from the events stream, re-sorted by time; the report counts them."""
    try:
        client = connect(redis_url)
        extra = read_stream_purchases(client, until)
    except (PublishError, redis.RedisError) as exc:
        raise DataError(f"--events-from: {exc}") from None
    if extra.empty:
        return log
    # Events already in the log (a log exported after an earlier retrain) are not added twice.
    logged = log.interactions[["customer_id", "order_id"]]
    logged = logged[logged["order_id"].astype(str).str.startswith("event:")]
    pairs = pd.MultiIndex.from_frame(extra[["customer_id", "order_id"]])
    extra = extra[~pairs.isin(pd.MultiIndex.from_frame(logged.astype(str)))]
    interactions = pd.concat([log.interactions, extra], ignore_index=True)
    interactions = interactions.sort_values("timestamp", kind="stable", ignore_index=True)
    new_items = extra.loc[~extra["item_id"].isin(log.items["item_id"]), ["item_id", "price"]]
    new_items = new_items.groupby("item_id", as_index=False)["price"].median()
    items = pd.concat([log.items, new_items.assign(title=pd.NA, category=pd.NA)], ignore_index=True)
    log.report.rows_kept += len(extra)
    log.report.events_from_stream = len(extra)
    return PurchaseLog(interactions=interactions, items=items, report=log.report,
                       fingerprint=log.fingerprint, source=f"{log.source} + {redis_url.split('@')[-1]} events")
