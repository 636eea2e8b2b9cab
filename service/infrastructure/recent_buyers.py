"""The customers who bought since the served model's data, for audiences (``POST /v1/audiences``).

Their purchases live in the live hashes the events write (``keys.customer_live``), not in the records
published with the version, so an audience built from the records alone would, say, list as due for re-order
a customer who re-ordered yesterday. Every ``refresh_s`` at most (``TAILOR_AUDIENCE_REFRESH_S``, the
documented lag of audiences behind events), a request that needs them finds the live hashes with a ``SCAN``
of every primary and reads each with its customer's published record (one pipeline per 1,000 customers; the
two keys share the customer's slot).
The answer keeps a generation number that changes only when what was read changed, so audiences scored
before stay valid until a new purchase arrives.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

import redis

from redis_state import keys
from scoring.recent_buyers import RecentBuyer
from service.domain.customer import CustomerState, decode_record, parse_live, recent_buyer
from service.infrastructure.customer_reads import scanned_live_customers

BATCH = 1_000


def read_recent_buyers(client: redis.Redis, version: str, item_index: dict[str, int],
                       item_meta: list[dict], data_end_day: float) -> list[RecentBuyer]:
    """Every customer with purchases newer than ``data_end_day``, sorted by id, as the audiences count them."""
    found: list[RecentBuyer] = []
    for customers in scanned_live_customers(client, BATCH):
        pipe = client.pipeline(transaction=False)
        for customer in customers:
            pipe.hgetall(keys.customer_live(customer))
            pipe.get(keys.customer_history(version, customer))
        replies = pipe.execute()
        for k, customer in enumerate(customers):
            state = CustomerState(customer, decode_record(replies[2 * k + 1]), parse_live(replies[2 * k]))
            buyer = recent_buyer(state, item_index, item_meta, data_end_day)
            if buyer is not None:
                found.append(buyer)
    found.sort(key=lambda b: b.customer_id)
    return found


class RecentBuyers:
    """This process's copy of the recent buyers of the served version, read again after ``refresh_s``."""

    def __init__(self, refresh_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.refresh_s = refresh_s
        self.clock = clock
        self._lock = threading.Lock()
        self._read_at: float | None = None
        self._version: str | None = None
        self._digest = b""
        self._entry: tuple[int, list[RecentBuyer]] = (0, [])

    def get(self, client: redis.Redis, version: str, item_index: dict[str, int], item_meta: list[dict],
            data_end_day: float) -> tuple[int, list[RecentBuyer]]:
        """(generation, recent buyers); concurrent requests wait for one read."""
        with self._lock:
            fresh = self._read_at is not None and self.clock() - self._read_at < self.refresh_s
            if fresh and version == self._version:
                return self._entry
            buyers = read_recent_buyers(client, version, item_index, item_meta, data_end_day)
            digest = _digest(version, buyers)
            if digest != self._digest:
                self._entry = (self._entry[0] + 1, buyers)
                self._digest = digest
            self._read_at, self._version = self.clock(), version
            return self._entry


def _digest(version: str, buyers: list[RecentBuyer]) -> bytes:
    """What the audiences depend on, in 16 bytes: the version and each buyer's id, history and totals."""
    h = hashlib.blake2b(version.encode(), digest_size=16)
    for b in buyers:
        h.update(b.customer_id.encode() + b"\0")
        for values in (b.history.items, b.history.orders, b.history.quantity, b.history.last_day):
            h.update(values.tobytes())
        h.update(repr((b.orders, b.spend, b.first_day, b.last_day, b.country)).encode())
    return h.digest()
