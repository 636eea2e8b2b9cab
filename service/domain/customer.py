"""A customer as the service sees them at request time, and the one-row history the model scores.

Three sources, fetched in one Redis round trip: the record published with the model version (profile
aggregates + purchase history), the live overlay of purchases received as events, and the session of
recent views / carts / clicks. Live purchases up to the end of the model's training data are already in
the record (the retraining job reads them back from the events stream), so only later ones count.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from redis_state.codec import CustomerRecord, unpack_customer
from scoring.history import SECONDS_PER_DAY, CustomerRow
from scoring.recent_buyers import RecentBuyer
from service.domain.ranking import item_indices


@dataclass(frozen=True)
class LivePurchase:
    """One purchase event (the live overlay holds one hash field per event id)."""

    item_id: str
    day: float
    quantity: float
    price: float | None


@dataclass(frozen=True)
class SessionItem:
    """The latest non-purchase interaction with an item."""

    item_id: str
    day: float
    kind: str


@dataclass(frozen=True)
class CustomerState:
    """Everything the request path knows about one customer."""

    customer_id: str
    record: CustomerRecord | None
    live: list[LivePurchase] = field(default_factory=list)
    session: list[SessionItem] = field(default_factory=list)

    @property
    def known(self) -> bool:
        """Published with the model version being served."""
        return self.record is not None

    @property
    def has_events(self) -> bool:
        return bool(self.live or self.session)

    def live_after(self, day: float) -> list[LivePurchase]:
        """Live purchases newer than ``day`` (the end of the model's data): those not yet in the record."""
        return [p for p in self.live if p.day > day]

    def latest_day(self) -> float | None:
        days = [p.day for p in self.live] + [s.day for s in self.session]
        if self.record is not None and self.record.order_count > 0:
            days.append(self.record.last_purchase_day)
        return max(days) if days else None


def decode_record(blob: bytes | None) -> CustomerRecord | None:
    """The packed record, or None when absent or unreadable (then the customer is treated as unknown)."""
    if not blob:
        return None
    try:
        return unpack_customer(blob, first_days=True)  # one view more: the tail dates repeat-purchase reasons
    except (ValueError, struct.error):
        return None


def live_value(item_id: str, day: float, quantity: float, price: float | None) -> bytes:
    """Hash value of one live purchase (field = event id): compact JSON ``[item, day, quantity, price]``."""
    return orjson.dumps([item_id, round(day, 9), quantity, price])


def session_value(day: float, kind: str) -> bytes:
    """Hash value of a session item (field = item id): ``[day, type]``."""
    return orjson.dumps([round(day, 9), kind])


def parse_live(raw: dict[bytes, bytes]) -> list[LivePurchase]:
    out = []
    for value in raw.values():
        try:
            item_id, day, quantity, price = orjson.loads(value)
            out.append(LivePurchase(str(item_id), float(day), float(quantity),
                                    None if price is None else float(price)))
        except (ValueError, TypeError):
            continue
    return out


def parse_session(raw: dict[bytes, bytes], limit: int) -> list[SessionItem]:
    """The ``limit`` most recent session items, newest first."""
    out = []
    for key, value in raw.items():
        try:
            day, kind = orjson.loads(value)
            out.append(SessionItem(key.decode("utf-8", "replace"), float(day), str(kind)))
        except (ValueError, TypeError):
            continue
    out.sort(key=lambda s: s.day, reverse=True)
    return out[:limit]


def purchase_history(state: CustomerState, item_index: dict[str, int], n_items: int, data_end_day: float,
                     now_day: float, *, include_session: bool = False) -> CustomerRow:
    """The customer's history aligned with the model's items: record + newer live purchases (+ session).

    Session items count as a single order each, so a visitor's views steer item-to-item models the way a
    first purchase would; they are only mixed in for customers the model does not know. The first purchase day
    of an item is the record's, or for an item the record lacks the day of its first live purchase (session
    item); a record without first days (published before they were kept) leaves the row without them, so its
    repeat-purchase reasons stay those of the versions before.
    """
    record = state.record
    live = state.live_after(data_end_day)
    if record is not None and not live and not include_session:
        valid = (record.items >= 0) & (record.items < n_items)
        if valid.all():
            first = record.item_first_day
            return CustomerRow(np.asarray(record.items, dtype=np.int32), np.asarray(record.orders, dtype=np.float32),
                               np.asarray(record.quantity, dtype=np.float32),
                               np.asarray(record.last_day, dtype=np.float64), float(now_day), n_items,
                               None if first is None else np.asarray(first, dtype=np.float64))
    entries: dict[int, list[float]] = {}
    dated = record is None or record.item_first_day is not None
    if record is not None:
        # Without first days the fourth column is a placeholder the row leaves out (``dated``).
        firsts = (record.item_first_day if record.item_first_day is not None else record.last_day).tolist()
        for col, orders, quantity, day, first in zip(record.items.tolist(), record.orders.tolist(),
                                                     record.quantity.tolist(), record.last_day.tolist(), firsts,
                                                     strict=True):
            if 0 <= col < n_items:
                entries[col] = [orders, quantity, day, first]
    for purchase in live:
        col = item_index.get(purchase.item_id)
        if col is None:
            continue
        entry = entries.setdefault(col, [0.0, 0.0, purchase.day, purchase.day])
        entry[0] += 1.0
        entry[1] += purchase.quantity
        entry[2] = max(entry[2], purchase.day)
        entry[3] = min(entry[3], purchase.day)
    if include_session:
        for item in state.session:
            col = item_index.get(item.item_id)
            if col is not None and col not in entries:
                entries[col] = [1.0, 1.0, item.day, item.day]
    cols = np.asarray(sorted(entries), dtype=np.int32)
    values = np.asarray([entries[c] for c in cols.tolist()], dtype=np.float64).reshape(-1, 4)
    return CustomerRow(cols, values[:, 0].astype(np.float32), values[:, 1].astype(np.float32), values[:, 2].copy(),
                       float(now_day), n_items, values[:, 3].copy() if dated else None)


@dataclass(frozen=True)
class AnswerBasis:
    """What a customer's recommendations are computed from, so that the API and the batch export
    (``tailor recommend --redis-url``) answer alike."""

    history: CustomerRow  # the row to score
    blocked: np.ndarray  # item indices the answer leaves out (besides the request's own filters)
    bought: np.ndarray  # item indices the customer bought (reasons say "you ordered")
    session: bool  # not known to the model: answered from live purchases and the session


def answer_basis(state: CustomerState, item_index: dict[str, int], n_items: int, data_end_day: float,
                 now_day: float, exclude_purchased: bool) -> AnswerBasis:
    """A known customer is scored on the published history with newer live purchases; one the model does not
    know, on their live purchases and session, never shown the items they just viewed (they have seen
    them). ``exclude_purchased`` leaves out every item bought, published or live."""
    session = not state.known
    history = purchase_history(state, item_index, n_items, data_end_day, now_day, include_session=session)
    blocked: list[np.ndarray] = []
    if session:
        bought = item_indices((p.item_id for p in state.live_after(data_end_day)), item_index)
        blocked.append(item_indices((s.item_id for s in state.session), item_index))
    else:
        bought = history.items
    if exclude_purchased and len(bought):
        blocked.append(bought)
    return AnswerBasis(history, np.concatenate(blocked) if blocked else np.empty(0, dtype=np.int64), bought,
                       session)


@dataclass(frozen=True)
class PurchaseTotals:
    """A customer's orders, spend and first / last purchase day, published record and newer live purchases."""

    orders: int
    spend: float
    first_day: float | None
    last_day: float | None


def purchase_totals(state: CustomerState, data_end_day: float, item_index: dict[str, int],
                    item_meta: Sequence[Mapping[str, Any]]) -> PurchaseTotals:
    """The record's totals plus the live purchases newer than the model's data. One purchase event is one
    order line and events at the same second belong to one order; a purchase without a price is valued at
    the catalogue's."""
    record = state.record
    known = record is not None and record.order_count > 0
    orders = record.order_count if record is not None else 0
    spend = float(record.spend) if record is not None else 0.0
    first = float(record.first_day) if known else None
    last = float(record.last_purchase_day) if known else None
    live = state.live_after(data_end_day)
    orders += len({round(p.day * SECONDS_PER_DAY) for p in live})
    for p in live:
        price = p.price
        if price is None and p.item_id in item_index:
            price = item_meta[item_index[p.item_id]].get("price")
        spend += p.quantity * float(price or 0.0)
        first = p.day if first is None else min(first, p.day)
        last = p.day if last is None else max(last, p.day)
    return PurchaseTotals(int(orders), spend, first, last)


def recent_buyer(state: CustomerState, item_index: dict[str, int], item_meta: Sequence[Mapping[str, Any]],
                 data_end_day: float) -> RecentBuyer | None:
    """A customer who bought since the model's data as the audiences count them (published history plus the
    newer purchases, totals to match), or None when nothing they bought is newer."""
    if not state.live_after(data_end_day):
        return None
    totals = purchase_totals(state, data_end_day, item_index, item_meta)
    row = purchase_history(state, item_index, len(item_meta), data_end_day, data_end_day)
    country = state.record.country if state.record is not None else -1
    return RecentBuyer(state.customer_id, row, totals.orders, totals.spend,
                       totals.first_day if totals.first_day is not None else np.inf,
                       totals.last_day if totals.last_day is not None else -np.inf, int(country))


def basket_history(items: np.ndarray, n_items: int, now_day: float) -> CustomerRow:
    """A basket (or an anonymous visitor's items) as a one-customer history: one order of each, bought now.

    ``items``: sorted, unique item indices (``np.unique`` of the known ones)."""
    cols = np.asarray(items, dtype=np.int32)
    ones = np.ones(len(cols), dtype=np.float32)
    return CustomerRow(cols, ones, ones, np.full(len(cols), float(now_day)), float(now_day), n_items)
