"""Value formats of the Redis keys named in ``redis_state.keys``, shared by the publisher and the service.

A published customer record packs the profile aggregates and the purchase history into one binary string
so the service fetches everything about a customer with a single GET:

    header  <4s I d d d i i  magic b"TLC1", n_items, spend, first_day, last_day, orders, country
    body    int32[n] item index | float32[n] orders | float32[n] quantity | float64[n] last_day

A version trained with segment columns (``--segment-col``) writes ``TLC2`` records instead: the same header
with magic b"TLC2", then ``<I`` k and int32[k] segment value indices (one per segment column, -1 unknown),
then the same body. Both are read, so versions published before segments existed stay servable.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np

CUSTOMER_MAGIC = b"TLC1"
SEGMENTED_MAGIC = b"TLC2"
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


def pack_customer(record: CustomerRecord) -> bytes:
    n = len(record.items)
    magic = SEGMENTED_MAGIC if record.segments else CUSTOMER_MAGIC
    header = _HEADER.pack(magic, n, record.spend, record.first_day, record.last_purchase_day,
                          record.order_count, record.country)
    if record.segments:
        header += _COUNT.pack(len(record.segments)) + np.asarray(record.segments, dtype="<i4").tobytes()
    return b"".join((
        header,
        np.asarray(record.items, dtype="<i4").tobytes(),
        np.asarray(record.orders, dtype="<f4").tobytes(),
        np.asarray(record.quantity, dtype="<f4").tobytes(),
        np.asarray(record.last_day, dtype="<f8").tobytes(),
    ))


def unpack_customer(blob: bytes) -> CustomerRecord:
    magic, n, spend, first_day, last_day, orders, country = _HEADER.unpack_from(blob)
    offset = _HEADER.size
    segments: tuple[int, ...] = ()
    if magic == SEGMENTED_MAGIC:
        (k,) = _COUNT.unpack_from(blob, offset)
        offset += _COUNT.size
        segments = tuple(int(v) for v in np.frombuffer(blob, dtype="<i4", count=k, offset=offset))
        offset += 4 * k
    elif magic != CUSTOMER_MAGIC:
        raise ValueError("not a customer record")
    items = np.frombuffer(blob, dtype="<i4", count=n, offset=offset)
    offset += 4 * n
    order_counts = np.frombuffer(blob, dtype="<f4", count=n, offset=offset)
    offset += 4 * n
    quantity = np.frombuffer(blob, dtype="<f4", count=n, offset=offset)
    offset += 4 * n
    last_days = np.frombuffer(blob, dtype="<f8", count=n, offset=offset)
    return CustomerRecord(items, order_counts, quantity, last_days, spend, first_day, last_day, orders, country,
                          segments)


def array_to_bytes(array: np.ndarray) -> bytes:
    """``.npy`` bytes: self-describing (dtype, shape) and loadable without pickle."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def array_from_bytes(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(blob), allow_pickle=False)
