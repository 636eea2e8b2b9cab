"""A per-process copy of customers' Redis values, kept exact by Redis' server-assisted invalidation.

Every recommendation needs the customer's published record, live purchases and session. Reading them costs
a Redis round trip (~100 µs of CPU here: more than a cached answer itself), yet they change only when an
event arrives. So each worker keeps the values it read and Redis tells it when to forget them:

* a subscriber connection listens on ``__redis__:invalidate``; the values to cache are read only through
  ``tracked_client`` connections, each of which turned on ``CLIENT TRACKING ON REDIRECT <subscriber>`` when it
  connected. Redis remembers the keys each of them read and, at the next write to one (from any process;
  expiries too), sends its name to this worker once (``FLUSHALL`` sends a null: forget everything). Keys this
  worker never read, or already heard about, cost it nothing: an event batch wakes only the workers holding
  its customers. (Broadcast tracking of every customer key sent every event to every worker: with five
  workers that was most of an event batch's CPU, docs/BENCHMARKS.md 10.11);
* a request first drains the invalidations already delivered (a non-blocking read), then looks up the
  cache: an event acknowledged to its sender has changed the next answer of every worker; a background
  thread drains every ``drain_every_s`` (0.1 s) so that the backlog stays small when no request comes;
* records are immutable per model version (their key includes it) and cached only when present; a customer
  whose record is absent is not stored (the record may appear: the version re-published after a Redis
  restart while the workers serve it); a fill races no invalidation: values read before an invalidation of
  the same customer that arrives before they are stored are not stored (per-customer stamps against a
  sequence number);
* Redis forgets a connection's tracked keys when the connection goes (closed here after an error or a
  timeout, or by the server: the thread checks every ``heartbeat_s`` with ``CLIENT LIST ID``), so the
  customers read through it (each entry keeps its ``Reader``) are dropped and its fills in flight refused;
  the rest stays tracked, so read timeouts do not empty the cache just when Redis is slow. When the
  subscriber fails, the cache is emptied and bypassed until it is back and the tracked connections have
  re-registered with it, so a Redis outage still turns into the popular fallback at once.

Works with Redis >= 6.2 over RESP2 (redis-py's own client-side cache needs Redis 7.4 and RESP3). Off with
``TAILOR_REDIS_CLUSTER=true`` (tracking is per node; see docs/SCALING.md); ``TAILOR_CUSTOMER_CACHE_SIZE=0``
turns it off too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Any

import redis

from redis_state import keys
from service.infrastructure.tracked_connections import TrackedPool, tracked_class

log = logging.getLogger("tailor.customer_cache")

INVALIDATE_CHANNEL = "__redis__:invalidate"
_UNSEEN: Any = object()
#: A tracked connection as registered: its ``id()`` here and its Redis client id (new at every reconnect).
Reader = tuple[int, int]


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
        self._entries: OrderedDict[str, tuple[Hashable, Any, Reader]] = OrderedDict()
        self._stamps: dict[str, int] = {}  # customer -> sequence number of their latest invalidation
        # key name -> customer id (None: not a customer key): a name is parsed once (a pure function of the
        # name: safe to drop)
        self._customer_of: dict[bytes, str | None] = {}
        self._sequence = 0
        self._floor = 0  # fills read before this sequence number are refused (stamps were dropped)
        self._ready = False
        self._subscriber: redis.connection.AbstractConnection | None = None
        self._control: redis.connection.AbstractConnection | None = None  # heartbeat and CLIENT LIST
        # Each time the subscriber (re)connects: tracked connections registered under an older one re-register.
        self._generation = 0
        self._subscriber_id = 0
        # Tracked connections of the current generation: id(connection) -> their Redis client id.
        self._tracked: dict[int, int] = {}
        self._pools: list[redis.ConnectionPool] = []
        self._local = threading.local()  # .reader: the tracked connection this thread checked out last
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

    def tracked_client(self, base: redis.Redis) -> redis.Redis:
        """A client like ``base`` (same server and timeouts) whose connections Redis tracks for this cache: read
        what ``put`` stores through it, after taking the ``token``, and take the ``reader`` right after."""
        pool = TrackedPool(self, connection_class=tracked_class(base.connection_pool.connection_class, self),
                            **base.connection_pool.connection_kwargs)
        self._pools.append(pool)
        return redis.Redis(connection_pool=pool)

    def reader(self) -> Reader | None:
        """The tracked connection this thread read through last (take it right after the read, for ``put``);
        None when it is not registered with Redis (nothing it read may be stored)."""
        return getattr(self._local, "reader", None)

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

    def put(self, customer_id: str, version: Hashable, value: Any, token: int, reader: Reader | None, *,
            evict: bool = True) -> None:
        """Store what was read through ``tracked_client`` after ``token`` (through the connection ``reader``)
        unless the customer was invalidated since, that connection is no longer tracked, or tracking broke;
        with ``evict=False`` only while the cache has room (values read ahead never push out requested ones)."""
        if not self._ready:
            return
        self._drain()
        with self._lock:
            if not self._ready or token < self._floor or self._stamps.get(customer_id, -1) > token:
                return
            if reader is None or self._tracked.get(reader[0]) != reader[1]:
                return
            if not evict and len(self._entries) >= self.max_entries and customer_id not in self._entries:
                return
            self._entries[customer_id] = (version, value, reader)
            self._entries.move_to_end(customer_id)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    # -- tracked connections ----------------------------------------------------------------------------
    def _track(self, connection: Any) -> None:
        """Turn on tracking for a ``tracked_client`` connection that just connected; while the subscriber is
        not there it stays untracked (``put`` refuses what it reads: the cache is not ready) and registers at
        its next checkout after that."""
        connection.tracked_as = None
        with self._lock:
            generation, subscriber_id, ready = self._generation, self._subscriber_id, self._ready
        if not ready:
            return
        connection.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", subscriber_id)
        connection.send_command("CLIENT", "ID")
        replies: list[Any] = []
        for _ in range(2):  # both replies, so that none is left unread on the connection
            try:
                replies.append(connection.read_response())
            except redis.ResponseError as error:
                replies.append(error)
        if replies[0] not in (b"OK", "OK"):  # e.g. the subscriber is gone: the read goes on, nothing is stored
            self._broken(f"CLIENT TRACKING refused: {replies[0]}")
            return
        client_id = int(replies[1])
        with self._lock:
            if self._ready and self._generation == generation:
                connection.tracked_as = generation
                self._tracked[id(connection)] = client_id

    def _lost(self, connection: Any) -> None:
        """A tracked connection closed: Redis forgot the keys it read, so no invalidation of what was read
        through it will come - forget those customers (fills in flight through it are refused by ``put``)."""
        with self._lock:
            client_id = self._tracked.pop(id(connection), None)
            if client_id is not None and connection.tracked_as == self._generation:
                self._drop_read_by_locked({(id(connection), client_id)})
        connection.tracked_as = None

    def _check_tracked(self, control: redis.connection.AbstractConnection) -> None:
        """Drop what was read through tracked connections Redis no longer has (killed by the server, an idle
        ``timeout``): the keys they read would never be invalidated."""
        with self._lock:
            tracked = dict(self._tracked)
        if not tracked:
            control.send_command("PING")
            control.read_response()
            return
        control.send_command("CLIENT", "LIST", "ID", *tracked.values())
        listed = control.read_response()
        alive = {int(field[3:]) for line in (listed.decode() if isinstance(listed, bytes) else listed).splitlines()
                 for field in line.split(" ", 1)[:1] if field.startswith("id=")}
        with self._lock:
            gone = [key for key, client_id in tracked.items()
                    if client_id not in alive and self._tracked.get(key) == client_id]
            for key in gone:
                del self._tracked[key]
            if gone:
                dropped = self._drop_read_by_locked({(key, tracked[key]) for key in gone})
                log.warning("customer cache: Redis closed %d tracked connection(s); %d customers read through "
                            "them dropped", len(gone), dropped)

    # -- invalidations ----------------------------------------------------------------------------------
    def forget(self, customer_ids: Iterable[str]) -> None:
        """Drop these customers now, as their invalidation would (fills read before are refused): this process
        just wrote their data. Redis may flush the writer's reply before the invalidation it sends the
        subscriber, so without this a request that follows the write in this process could still read the
        old value (seen as a rare stale answer under load)."""
        with self._lock:
            self._sequence += 1
            self._forget_locked(customer_ids)

    def _invalidate(self, names: list[bytes] | None) -> None:
        with self._lock:
            self._sequence += 1
            if names is None:  # FLUSHALL / FLUSHDB
                self._reset_locked()
                return
            customer_of = self._customer_of
            customers = []
            for raw in names:
                customer = customer_of.get(raw, _UNSEEN)
                if customer is _UNSEEN:
                    customer = customer_of[raw] = keys.customer_of_tracked_key(raw.decode("utf-8", "replace"))
                if customer is not None:
                    customers.append(customer)
            self._forget_locked(customers)
            if len(self._stamps) > 4 * max(self.max_entries, 1024):
                self._reset_locked()
            if len(customer_of) > 8 * max(self.max_entries, 1024):
                customer_of.clear()

    def _forget_locked(self, customers: Iterable[str]) -> None:
        """Drop ``customers`` and stamp them with the current sequence number, so that fills read before are
        refused (caller holds ``_lock`` and has just advanced the sequence)."""
        entries, stamps, sequence = self._entries, self._stamps, self._sequence
        for customer in customers:
            entries.pop(customer, None)
            stamps[customer] = sequence

    def _drop_read_by_locked(self, readers: set[Reader]) -> int:
        """Forget the customers read through ``readers`` (caller holds ``_lock``); how many. A scan, since a
        connection is lost rarely and entries are many."""
        stale = [customer for customer, entry in self._entries.items() if entry[2] in readers]
        for customer in stale:
            del self._entries[customer]
        return len(stale)

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
        control = self._connection()
        control.send_command("CLIENT", "LIST", "ID", subscriber_id)  # a RedisError before Redis 6.2
        control.read_response()
        with self._read_lock, self._lock:
            if self._stop.is_set():  # closed meanwhile
                subscriber.disconnect()
                control.disconnect()
                return
            self._subscriber, self._control = subscriber, control
            self._generation += 1
            self._subscriber_id = int(subscriber_id)
            self._tracked.clear()
            self._reset_locked()
            self._ready = True
        log.info("customer cache: invalidation tracking on")

    def _broken(self, why: str, *, quiet: bool = False) -> None:
        """Forget everything and bypass the cache until tracking is back (invalidations may be lost)."""
        with self._read_lock:
            with self._lock:
                was_ready = self._ready
                self._ready = False
                self._tracked.clear()
                self._reset_locked()
            subscriber, control, self._subscriber, self._control = self._subscriber, self._control, None, None
        for connection in (subscriber, control):
            if connection is not None:
                connection.disconnect()
        if was_ready and not quiet:
            log.warning("customer cache bypassed until Redis tracking is back (%s)", why)

    def _run(self) -> None:
        next_heartbeat = 0.0
        refused = False  # told the operator that this Redis refuses tracking (said once, not every retry)
        while not self._stop.is_set():
            if self._subscriber is None:
                if self._stop.is_set():
                    break
                try:
                    self._connect()
                    refused = False
                except (redis.RedisError, OSError) as exc:
                    if isinstance(exc, redis.ResponseError) and not refused:
                        refused = True
                        log.warning("customer cache off: Redis refused %s (the cache needs CLIENT ID, CLIENT "
                                    "TRACKING and CLIENT LIST ID: Redis >= 6.2); every request reads Redis", exc)
                    self._broken(f"{type(exc).__name__}")
                    self._stop.wait(self.retry_s)
                    continue
            self._stop.wait(self.drain_every_s)
            self._drain()
            now = time.monotonic()
            control = self._control
            if now >= next_heartbeat and control is not None:
                next_heartbeat = now + self.heartbeat_s
                try:  # a tracked connection gone silently would stop its invalidations
                    self._check_tracked(control)
                except (redis.RedisError, OSError, ValueError) as exc:
                    self._broken(f"control connection: {type(exc).__name__}")

    def close(self) -> None:
        """Stop tracking: closing the connections wakes the thread at once."""
        self._stop.set()
        self._broken("closed", quiet=True)
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        for pool in self._pools:
            pool.disconnect()
