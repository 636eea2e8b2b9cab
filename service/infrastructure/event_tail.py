"""The events stream read incrementally by each process: the counts behind ``GET /v1/trending``.

Read only: the stream ``keys.EVENTS_STREAM`` (written by ``POST /v1/events``) is tailed with ``XRANGE``
from the last entry this process saw, at most once per ``refresh_s`` (that is the documented update lag),
and its views, carts and purchases are added to ``service.domain.trending.TrendCounts``. A customer's
group (country, segment values) comes from their published record of the served version, one pipelined
``GET`` per refresh for the customers not seen before (every key is single-slot: cluster-safe).
The first refresh starts ``MAX_WINDOW_HOURS`` back (stream ids are the append time in ms).
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable

import redis

from redis_state import keys
from redis_state.codec import unpack_customer
from service.domain.trending import MAX_WINDOW_HOURS, TYPE_WEIGHTS, Group, TrendCounts
from service.infrastructure.redis_client import RedisGateway

log = logging.getLogger("tailor.trending")

#: Entries read per XRANGE call, and at most per refresh (the rest waits for the next one).
PAGE = 5_000
MAX_PER_REFRESH = 200_000
#: Customers whose group is remembered (per model version).
MAX_CUSTOMERS = 200_000


class EventTail:
    """This process's view of the recent events; ``counts`` is refreshed at most every ``refresh_s``."""

    def __init__(self, gateway: RedisGateway, refresh_s: float = 5.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.gateway = gateway
        self.refresh_s = refresh_s
        self.clock = clock
        self.counts = TrendCounts()
        self.events_read = 0
        self.refreshed_at: float | None = None  # epoch seconds of the last successful read
        self._last_id: bytes | None = None
        self._version: str | None = None
        self._groups: dict[str, Group] = {}
        self._lock = threading.Lock()

    def refresh(self, version: str, item_index: dict[str, int]) -> None:
        """Read what was appended since the last read, unless that read is younger than ``refresh_s``."""
        now = self.clock()
        if self.refreshed_at is not None and now - self.refreshed_at < self.refresh_s:
            return
        with self._lock:
            if self.refreshed_at is not None and self.clock() - self.refreshed_at < self.refresh_s:
                return
            if version != self._version:  # item indices and customer groups belong to one version
                self.counts, self._groups, self._last_id, self._version = TrendCounts(), {}, None, version
            self.gateway.call(lambda: self._read(item_index))
            self.counts.prune(now)
            self.refreshed_at = now

    def _read(self, item_index: dict[str, int]) -> None:
        client = self.gateway.loads
        start = self._last_id
        if start is None:
            start_arg: bytes | str = f"{int((self.clock() - MAX_WINDOW_HOURS * 3600) * 1000)}-0"
        read = 0
        while read < MAX_PER_REFRESH:
            lower = b"(" + start if start is not None else start_arg
            entries = client.xrange(keys.EVENTS_STREAM, min=lower, max="+", count=PAGE)
            if not entries:
                break
            self._add(client, entries, item_index)
            start = entries[-1][0]
            read += len(entries)
            if len(entries) < PAGE:
                break
        if start is not None:
            self._last_id = start
        self.events_read += read

    def _add(self, client: redis.Redis, entries: list, item_index: dict[str, int]) -> None:
        rows = []
        for entry_id, fields in entries:
            weight = TYPE_WEIGHTS.get(fields.get(b"type", b"").decode("utf-8", "replace"))
            item = item_index.get(fields.get(b"item_id", b"").decode("utf-8", "replace"))
            if weight is None or item is None:
                continue
            try:
                received = float(fields[b"received_at"])
            except (KeyError, ValueError):
                received = int(entry_id.split(b"-")[0]) / 1000.0
            rows.append((received, item, fields.get(b"customer_id", b"").decode("utf-8", "replace"), weight))
        self._resolve(client, {customer for _, _, customer, _ in rows if customer not in self._groups})
        for received, item, customer, weight in rows:
            self.counts.add(received, item, self._groups.get(customer), weight)

    def _resolve(self, client: redis.Redis, customers: set[str]) -> None:
        """The groups of customers not seen before, from their published records (None: not in the model)."""
        if not customers:
            return
        if len(self._groups) + len(customers) > MAX_CUSTOMERS:
            self._groups.clear()
        ordered = sorted(customers)
        pipe = client.pipeline(transaction=False)
        for customer in ordered:
            pipe.get(keys.customer_history(self._version or "", customer))
        for customer, blob in zip(ordered, pipe.execute(), strict=True):
            group: Group = None
            if blob:
                try:
                    record = unpack_customer(blob)
                    group = (int(record.country), tuple(int(v) for v in record.segments))
                except (ValueError, struct.error):
                    group = None
            self._groups[customer] = group
