"""A per-process copy of customers' Redis values, kept exact by Redis' server-assisted invalidation.

Every recommendation needs the customer's published record, live purchases and session. Reading them costs
a Redis round trip (~100 µs of CPU here: more than a cached answer itself), yet they change only when an
event arrives. So each worker keeps the values it read and Redis tells it when to forget them:

* a subscriber connection listens on ``__redis__:invalidate``; a second connection turns on
  ``CLIENT TRACKING ON REDIRECT <subscriber> BCAST PREFIX tailor:live: PREFIX tailor:session:``, so every
  write to any customer's live overlay or session - from any process, and expiries too - sends that key's
  name to every worker (``FLUSHALL`` sends a null: forget everything);
* a request first drains the invalidations already delivered (a non-blocking read), then looks up the
  cache: an event acknowledged to its sender has changed the next answer of every worker; a background
  thread drains every ``drain_every_s`` (0.1 s) so that the backlog stays small when no request comes.
  It does not wake per message: with ``BCAST`` every worker receives every event's invalidation, and
  waking all workers for each batch doubled the median latency of 100-event batches (docs/API_BENCHMARK.md);
* records are immutable per model version (their key includes it), so only live and session keys are
  tracked; a customer whose record is absent is not stored (the record may appear: the version
  re-published after a Redis restart while the workers serve it); a fill races no invalidation: values
  read before an invalidation of the same customer that arrives before they are stored are not stored
  (per-customer stamps against a sequence number);
* when either connection fails the cache is emptied and bypassed until both are back (an invalidation may
  have been missed), so a Redis outage still turns into the popular fallback at once.

Works with Redis >= 6 over RESP2 (redis-py's own client-side cache needs Redis 7.4 and RESP3). Off with
``TAILOR_REDIS_CLUSTER=true`` (BCAST is per node; see docs/SCALING.md); ``TAILOR_CUSTOMER_CACHE_SIZE=0``
turns it off too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

import redis

from redis_state import keys

log = logging.getLogger("tailor.customer_cache")

INVALIDATE_CHANNEL = "__redis__:invalidate"
_UNSEEN: Any = object()


class CustomerCache:
    """LRU map customer id -> (model version, value) with invalidation pushed by Redis; thread-safe."""

    def __init__(self, client: redis.Redis, max_entries: int, *, retry_s: float = 1.0,
                 heartbeat_s: float = 1.0, drain_every_s: float = 0.1) -> None:
        self.max_entries = max_entries
        self.retry_s = retry_s
        self.heartbeat_s = heartbeat_s
        self.drain_every_s = drain_every_s
        self._pool = getattr(client, "connection_pool", None)  # a cluster client has none: the cache is off
        self._lock = threading.Lock()  # entries, stamps, sequence
        self._read_lock = threading.RLock()  # the subscriber connection (held only while reading it)
        self._entries: OrderedDict[str, tuple[Hashable, Any]] = OrderedDict()
        self._stamps: dict[str, int] = {}  # customer -> sequence number of their latest invalidation
        # key name -> customer id (None: not a customer key): with BCAST every worker parses every changed
        # key of every event, so each name is parsed once (a pure function of the name: safe to drop)
        self._customer_of: dict[bytes, str | None] = {}
        self._sequence = 0
        self._floor = 0  # fills read before this sequence number are refused (stamps were dropped)
        self._ready = False
        self._subscriber: redis.connection.AbstractConnection | None = None
        self._tracker: redis.connection.AbstractConnection | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0

    @property
    def ready(self) -> bool:
        """Tracking is on: cached values are exact."""
        return self._ready

    @property
    def invalidations(self) -> int:
        """A sequence number that grows with every invalidation (and reset) applied so far."""
        return self._sequence

    def __len__(self) -> int:
        return len(self._entries)

    # -- request path -----------------------------------------------------------------------------------
    def token(self) -> int:
        """Take before reading a customer from Redis; hand to ``put`` with what was read."""
        self.start()
        return self._sequence

    def get(self, customer_id: str, version: Hashable) -> Any | None:
        """The value stored for (customer, version), None when absent, stale or not ``ready``."""
        if not self._ready:
            return None
        self._drain()
        with self._lock:
            found = self._entries.get(customer_id)
            if found is None or found[0] != version:
                self.misses += 1
                return None
            self._entries.move_to_end(customer_id)
            self.hits += 1
            return found[1]

    def put(self, customer_id: str, version: Hashable, value: Any, token: int, *, evict: bool = True) -> None:
        """Store what was read after ``token`` unless the customer was invalidated since (or tracking broke);
        with ``evict=False`` only while the cache has room (values read ahead never push out requested ones)."""
        if not self._ready:
            return
        self._drain()
        with self._lock:
            if not self._ready or token < self._floor or self._stamps.get(customer_id, -1) > token:
                return
            if not evict and len(self._entries) >= self.max_entries and customer_id not in self._entries:
                return
            self._entries[customer_id] = (version, value)
            self._entries.move_to_end(customer_id)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    # -- invalidations ----------------------------------------------------------------------------------
    def _invalidate(self, names: list[bytes] | None) -> None:
        with self._lock:
            self._sequence += 1
            if names is None:  # FLUSHALL / FLUSHDB
                self._reset_locked()
                return
            customer_of, entries, stamps, sequence = self._customer_of, self._entries, self._stamps, self._sequence
            for raw in names:
                customer = customer_of.get(raw, _UNSEEN)
                if customer is _UNSEEN:
                    customer = customer_of[raw] = keys.customer_of_tracked_key(raw.decode("utf-8", "replace"))
                if customer is not None:
                    entries.pop(customer, None)
                    stamps[customer] = sequence
            if len(stamps) > 4 * max(self.max_entries, 1024):
                self._reset_locked()
            if len(customer_of) > 8 * max(self.max_entries, 1024):
                customer_of.clear()

    def _reset_locked(self) -> None:
        """Empty the cache and refuse fills read before now (caller holds ``_lock``)."""
        self._entries.clear()
        self._stamps.clear()
        self._sequence += 1
        self._floor = self._sequence

    def _drain(self) -> None:
        """Apply every invalidation already received (a non-blocking read of the subscriber connection)."""
        with self._read_lock:
            subscriber = self._subscriber
            if subscriber is None:
                return
            try:
                while subscriber.can_read(timeout=0):
                    message = subscriber.read_response()
                    if isinstance(message, list) and len(message) == 3 and message[0] == b"message":
                        self._invalidate(message[2])
            except (redis.RedisError, OSError, ValueError) as exc:
                self._broken(f"{type(exc).__name__}: {exc}")

    # -- connections ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start tracking (a background thread); also done by the first read. No-op when disabled."""
        if self._thread is not None or not self.enabled:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tailor-customer-cache", daemon=True)
                self._thread.start()

    def _connection(self) -> redis.connection.AbstractConnection:
        kwargs = dict(self._pool.connection_kwargs)
        kwargs["socket_timeout"] = max(kwargs.get("socket_timeout") or 0.0, 5.0)
        kwargs["protocol"] = 2  # invalidations as plain pub/sub arrays (REDIRECT), whatever the client default
        connection = self._pool.connection_class(**kwargs)
        connection.connect()
        return connection

    def _connect(self) -> None:
        subscriber = self._connection()
        subscriber.send_command("CLIENT", "ID")
        subscriber_id = subscriber.read_response()
        subscriber.send_command("SUBSCRIBE", INVALIDATE_CHANNEL)
        subscriber.read_response()
        tracker = self._connection()
        prefixes = [part for prefix in keys.CUSTOMER_TRACKED_PREFIXES for part in ("PREFIX", prefix)]
        tracker.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", subscriber_id, "BCAST", *prefixes)
        if tracker.read_response() not in (b"OK", "OK"):
            raise redis.RedisError("CLIENT TRACKING was refused")
        with self._read_lock, self._lock:
            if self._stop.is_set():  # closed meanwhile
                subscriber.disconnect()
                tracker.disconnect()
                return
            self._subscriber, self._tracker = subscriber, tracker
            self._reset_locked()
            self._ready = True
        log.info("customer cache: invalidation tracking on")

    def _broken(self, why: str, *, quiet: bool = False) -> None:
        """Forget everything and bypass the cache until tracking is back (invalidations may be lost)."""
        with self._read_lock:
            with self._lock:
                was_ready = self._ready
                self._ready = False
                self._reset_locked()
            subscriber, tracker, self._subscriber, self._tracker = self._subscriber, self._tracker, None, None
        for connection in (subscriber, tracker):
            if connection is not None:
                connection.disconnect()
        if was_ready and not quiet:
            log.warning("customer cache bypassed until Redis tracking is back (%s)", why)

    def _run(self) -> None:
        next_heartbeat = 0.0
        while not self._stop.is_set():
            if self._subscriber is None:
                if self._stop.is_set():
                    break
                try:
                    self._connect()
                except (redis.RedisError, OSError) as exc:
                    self._broken(f"{type(exc).__name__}")
                    self._stop.wait(self.retry_s)
                    continue
            self._stop.wait(self.drain_every_s)
            self._drain()
            now = time.monotonic()
            tracker = self._tracker
            if now >= next_heartbeat and tracker is not None:
                next_heartbeat = now + self.heartbeat_s
                try:  # a dead tracking connection would silently stop the invalidations
                    tracker.send_command("PING")
                    tracker.read_response()
                except (redis.RedisError, OSError) as exc:
                    self._broken(f"tracking connection: {type(exc).__name__}")

    def close(self) -> None:
        """Stop tracking: closing the connections wakes the thread at once."""
        self._stop.set()
        self._broken("closed", quiet=True)
        if self._thread is not None:
            self._thread.join(timeout=2.0)
