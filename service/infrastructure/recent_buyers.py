"""The customers who bought since the served model's data, for audiences (``POST /v1/audiences``).

Their purchases live in the live hashes the events write (``keys.customer_live``), not in the records
published with the version, so an audience built from the records alone would, say, list as due for re-order
a customer who re-ordered yesterday. Every ``refresh_s`` at most (``TAILOR_AUDIENCE_REFRESH_S``, the
documented lag of audiences behind events), a request that needs them finds the live hashes with a ``SCAN``
of every primary and asks each one's length (``HLEN``, pipelines of 1,000). A live hash only grows (one field
per purchase event, never rewritten) until it expires, so only the customers whose length changed since the
last read are read again, with their published record (the two keys share the customer's slot); every
``FULL_READ_S`` everyone is read again all the same. Each snapshot has a generation number that changes only
when a customer's data changed, and says which customers changed at each generation, so that audiences can
score again just those customers.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import redis

from redis_state import keys
from redis_state.codec import CustomerRecord
from scoring.recent_buyers import RecentBuyer
from service.domain.customer import CustomerState, decode_record, parse_live, recent_buyer
from service.infrastructure.customer_reads import scanned_live_customers

BATCH = 1_000
#: Seconds after which every recent buyer is read again, whatever their live hash's length.
FULL_READ_S = 600.0
#: Generations whose changed customers a snapshot remembers.
HISTORY = 32


@dataclass(frozen=True)
class Snapshot:
    """The recent buyers as read at one time, sorted by customer id."""

    generation: int
    buyers: list[RecentBuyer]
    changes: dict[int, frozenset[str]] = field(default_factory=dict)  # generation -> customers changed at it

    def changed_since(self, generation: int) -> set[str] | None:
        """Customers whose data changed after ``generation``; None when that is too long ago to tell."""
        later = range(generation + 1, self.generation + 1)
        if any(g not in self.changes for g in later):
            return None
        return set().union(*(self.changes[g] for g in later))


#: Where customers' published records come from: the version whose records are read from Redis alongside the
#: live hashes, or a function giving them (a model directory's).
Records = str | Callable[[list[str]], list[CustomerRecord | None]]


def read_buyers(client: redis.Redis, customers: Iterable[str], published: Records, item_index: dict[str, int],
                item_meta: list[dict], data_end_day: float) -> dict[str, RecentBuyer | None]:
    """Each customer as the audiences count them (None: nothing bought after ``data_end_day``)."""
    found: dict[str, RecentBuyer | None] = {}
    customers = list(customers)
    for start in range(0, len(customers), BATCH):
        chunk = customers[start:start + BATCH]
        pipe = client.pipeline(transaction=False)
        for customer in chunk:
            pipe.hgetall(keys.customer_live(customer))
            if isinstance(published, str):
                pipe.get(keys.customer_history(published, customer))
        replies = pipe.execute()
        if isinstance(published, str):
            lives, records = replies[0::2], [decode_record(blob) for blob in replies[1::2]]
        else:
            lives, records = replies, published(chunk)
        for customer, live, record in zip(chunk, lives, records, strict=True):
            found[customer] = recent_buyer(CustomerState(customer, record, parse_live(live)), item_index,
                                           item_meta, data_end_day)
    return found


def all_recent_buyers(client: redis.Redis, published: Records, item_index: dict[str, int], item_meta: list[dict],
                      data_end_day: float) -> list[RecentBuyer]:
    """Every customer with purchases newer than ``data_end_day`` (a ``SCAN`` of the live hashes, then each read),
    sorted by id."""
    customers = [c for found in scanned_live_customers(client, BATCH) for c in found]
    buyers = read_buyers(client, customers, published, item_index, item_meta, data_end_day)
    return sorted((b for b in buyers.values() if b is not None), key=lambda b: b.customer_id)


def live_lengths(client: redis.Redis) -> dict[str, int]:
    """Every customer with a live hash and its number of purchases."""
    lengths: dict[str, int] = {}
    for customers in scanned_live_customers(client, BATCH):
        pipe = client.pipeline(transaction=False)
        for customer in customers:
            pipe.hlen(keys.customer_live(customer))
        lengths.update((c, int(n)) for c, n in zip(customers, pipe.execute(), strict=True) if n)
    return lengths


class RecentBuyers:
    """This process's copy of the recent buyers of the served version, read again after ``refresh_s``."""

    def __init__(self, refresh_s: float, clock: Callable[[], float] = time.monotonic,
                 full_read_s: float = FULL_READ_S) -> None:
        self.refresh_s = refresh_s
        self.full_read_s = full_read_s
        self.clock = clock
        self._lock = threading.Lock()
        self._read_at: float | None = None
        self._full_at: float | None = None
        self._version: str | None = None
        self._seen: dict[str, tuple[int, bytes, RecentBuyer | None]] = {}  # customer -> (length, digest, buyer)
        self._snapshot = Snapshot(0, [])

    def get(self, client: redis.Redis, version: str, item_index: dict[str, int], item_meta: list[dict],
            data_end_day: float) -> Snapshot:
        """The current snapshot; concurrent requests wait for one read."""
        with self._lock:
            now = self.clock()
            same = version == self._version
            if same and self._read_at is not None and now - self._read_at < self.refresh_s:
                return self._snapshot
            full = not same or self._full_at is None or now - self._full_at >= self.full_read_s
            before = self._seen if same else {}
            known = {} if full else before
            lengths = live_lengths(client)
            stale = [c for c, n in lengths.items() if c not in known or known[c][0] != n]
            fresh = read_buyers(client, stale, version, item_index, item_meta, data_end_day)
            seen = {c: (lengths[c], _digest(fresh[c]), fresh[c]) if c in fresh else known[c] for c in lengths}
            changed = frozenset(c for c in seen.keys() | before.keys()
                                if seen.get(c, (0, b""))[1] != before.get(c, (0, b""))[1])
            if changed or not same:
                generation = self._snapshot.generation + 1
                changes = {g: ids for g, ids in self._snapshot.changes.items() if g > generation - HISTORY}
                if same:
                    changes[generation] = changed
                buyers = sorted((b for _, _, b in seen.values() if b is not None), key=lambda b: b.customer_id)
                self._snapshot = Snapshot(generation, buyers, changes)
            self._seen, self._version, self._read_at = seen, version, now
            if full:
                self._full_at = now
            return self._snapshot


def _digest(buyer: RecentBuyer | None) -> bytes:
    """What the audiences depend on of one customer, in 16 bytes (empty: not a recent buyer)."""
    if buyer is None:
        return b""
    h = hashlib.blake2b(buyer.customer_id.encode(), digest_size=16)
    row = buyer.history
    for values in (row.items, row.orders, row.quantity, row.last_day, row.first_day):
        h.update(b"-" if values is None else values.tobytes())
    h.update(repr((buyer.orders, buyer.spend, buyer.first_day, buyer.last_day, buyer.country)).encode())
    return h.digest()
