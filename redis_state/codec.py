"""Value formats of the Redis keys named in ``redis_state.keys``, shared by the publisher and the service.

A published customer record packs the profile aggregates and the purchase history into one binary string
so the service fetches everything about a customer with a single GET:

    header  <4s I d d d i i  magic b"TLC1", n_items, spend, first_day, last_day, orders, country
    body    int32[n] item index | float32[n] orders | float32[n] quantity | float64[n] last_day

A version trained with segment columns (``--segment-col``) writes ``TLC2`` records instead: the same header
with magic b"TLC2", then ``<I`` k and int32[k] segment value indices (one per segment column, -1 unknown),
then the same body.

Records of models that keep each item's first purchase day (audiences date a re-order interval from it,
repeat-purchase reasons their period) end with ``float64[n]`` first purchase day per item after the body:
magic b"TLC3" for a TLC1 layout, b"TLC4" for a TLC2 one. Everything before that tail keeps its offset, and
the tail is one more view, read only when asked (``first_days=True``: the request path and audiences). Every
magic is read, so versions published before stay servable (their records have no first days: None).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np

CUSTOMER_MAGIC = b"TLC1"
SEGMENTED_MAGIC = b"TLC2"
DATED_MAGIC = b"TLC3"
SEGMENTED_DATED_MAGIC = b"TLC4"
#: magic -> (has segments, ends with the first purchase day per item)
_LAYOUTS = {CUSTOMER_MAGIC: (False, False), SEGMENTED_MAGIC: (True, False), DATED_MAGIC: (False, True),
            SEGMENTED_DATED_MAGIC: (True, True)}
_MAGICS = {layout: magic for magic, layout in _LAYOUTS.items()}
_HEADER = struct.Struct("<4sIdddii")
_COUNT = struct.Struct("<I")


@dataclass(frozen=True)
class CustomerRecord:
    """A customer's published aggregates and history (item indices of the version it was published with)."""

    items: np.ndarray
    orders: np.ndarray
    quantity: np.ndarray
    last_day: np.ndarray
    spend: float
    first_day: float
    last_purchase_day: float
    order_count: int
    country: int
    segments: tuple[int, ...] = ()  # value index per segment column of the version (-1 unknown)
    item_first_day: np.ndarray | None = None  # float64 per item: first purchase day; None: not kept / not read


def pack_customer(record: CustomerRecord) -> bytes:
    n = len(record.items)
    dated = record.item_first_day is not None
    magic = _MAGICS[bool(record.segments), dated]
    header = _HEADER.pack(magic, n, record.spend, record.first_day, record.last_purchase_day,
                          record.order_count, record.country)
    if record.segments:
        header += _COUNT.pack(len(record.segments)) + np.asarray(record.segments, dtype="<i4").tobytes()
    parts = [
        header,
        np.asarray(record.items, dtype="<i4").tobytes(),
        np.asarray(record.orders, dtype="<f4").tobytes(),
        np.asarray(record.quantity, dtype="<f4").tobytes(),
        np.asarray(record.last_day, dtype="<f8").tobytes(),
    ]
    if dated:
        first = np.asarray(record.item_first_day, dtype="<f8")
        if len(first) != n:
            raise ValueError(f"{len(first)} first purchase days for {n} items")
        parts.append(first.tobytes())
    return b"".join(parts)


def unpack_customer(blob: bytes, *, first_days: bool = False) -> CustomerRecord:
    """The record of ``blob`` (any magic). ``first_days``: also read the first purchase day per item (None when
    the record has none); left unread by default, for readers that need no first days."""
    magic, n, spend, first_day, last_day, orders, country = _HEADER.unpack_from(blob)
    layout = _LAYOUTS.get(magic)
    if layout is None:
        raise ValueError("not a customer record")
    offset = _HEADER.size
    segments: tuple[int, ...] = ()
    if layout[0]:
        (k,) = _COUNT.unpack_from(blob, offset)
        offset += _COUNT.size
        segments = tuple(int(v) for v in np.frombuffer(blob, dtype="<i4", count=k, offset=offset))
        offset += 4 * k
    items = np.frombuffer(blob, dtype="<i4", count=n, offset=offset)
    offset += 4 * n
    order_counts = np.frombuffer(blob, dtype="<f4", count=n, offset=offset)
    offset += 4 * n
    quantity = np.frombuffer(blob, dtype="<f4", count=n, offset=offset)
    offset += 4 * n
    last_days = np.frombuffer(blob, dtype="<f8", count=n, offset=offset)
    item_first = None
    if first_days and layout[1]:
        item_first = np.frombuffer(blob, dtype="<f8", count=n, offset=offset + 8 * n)
    return CustomerRecord(items, order_counts, quantity, last_days, spend, first_day, last_day, orders, country,
                          segments, item_first)


def array_to_bytes(array: np.ndarray) -> bytes:
    """``.npy`` bytes: self-describing (dtype, shape) and loadable without pickle."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def array_from_bytes(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(blob), allow_pickle=False)
