"""A worker reads its customers before they ask: the served version's customers into the customer cache and
their scoring rows into the rank memo, in the background, when the worker starts and whenever another model
version becomes active.

Without it every worker meets each customer cold once (a Redis read, the history row, the model's whole CF row
for its range): with five workers and a 5-second load test over 4,335 customers most requests were such first
reads (docs/BENCHMARKS.md, 10.9). Reading ahead is bounded by the caches' sizes
(``TAILOR_CUSTOMER_CACHE_SIZE``, ``TAILOR_ANSWER_CACHE_SIZE``), never pushes out a value a request stored,
and stays exact: the cache refuses a customer whose data changed while it was read, and remembered rows are
keyed by the fingerprint of the data they came from. ``TAILOR_READ_AHEAD=false`` turns it off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from service.infrastructure.model_store import ModelStore, ServingState
from service.infrastructure.repository import Repository
from service.usecases.engine import Engine

log = logging.getLogger("tailor.read_ahead")


class ReadAhead:
    """Reads the served version's customers ahead of their requests, once per version, in one thread."""

    #: Pause after every 256 customers: requests arriving meanwhile get the interpreter first.
    PAUSE_S = 0.002

    def __init__(self, store: ModelStore, repository: Repository, engine: Engine, enabled: bool) -> None:
        self.store = store
        self.repository = repository
        self.engine = engine
        self.enabled = enabled
        self._lock = threading.Lock()
        self._running: threading.Thread | None = None
        self._pending: ServingState | None = None
        self.last: dict[str, float | int | str] = {}  # what the latest run read (logged; read by tests)
        #: Called after every run, in its thread (a gunicorn worker freezes what was read: ``gunicorn_conf``).
        self.on_done: list[Callable[[], None]] = []

    @property
    def busy(self) -> bool:
        """A read-ahead is running or waiting to run."""
        return self._running is not None

    def limit(self) -> int:
        """Customers worth reading: as many as the larger of the two caches holds (0: both are off)."""
        cache = self.repository.customers
        return max(cache.max_entries if cache.enabled else 0,
                   self.engine.customer_rows.max_entries if self.engine.memoise else 0)

    def start(self) -> None:
        """Read ahead for the state served now, and again after each change of version (a gunicorn worker's
        ``post_worker_init``)."""
        if not self.enabled or self.limit() == 0:
            return
        if self.schedule not in self.store.on_new_version:
            self.store.on_new_version.append(self.schedule)
        state = self.store.current()
        if state is not None:
            self.schedule(state)

    def schedule(self, state: ServingState) -> None:
        """Read ahead for ``state`` in the background (after the run in progress, if any)."""
        with self._lock:
            self._pending = state
            if self._running is None:
                self._running = threading.Thread(target=self._loop, name="tailor-read-ahead", daemon=True)
                self._running.start()

    def _loop(self) -> None:
        while True:
            with self._lock:
                state, self._pending = self._pending, None
                if state is None:
                    self._running = None
                    return
            try:
                self.run(state)
            except (redis.RedisError, OSError) as exc:  # best effort: requests read what they need themselves
                log.warning("reading customers ahead stopped: %s", type(exc).__name__)
            except Exception:  # never the end of read-ahead for the next version
                log.exception("reading customers ahead failed")

    def run(self, state: ServingState) -> int:
        """Read ``state``'s customers now (this thread); the number read. Stops when another state is served."""
        cache = self.repository.customers
        if cache.enabled:
            cache.start()
            deadline = time.monotonic() + 10.0
            while not cache.ready and time.monotonic() < deadline:  # nothing can be kept before tracking is on
                time.sleep(0.01)
        started = time.monotonic()
        read = rows = 0
        version = state.model.version
        for customer_id, customer, seen in self.repository.read_ahead(version, self.limit()):
            if self.store.current() is not state:
                break
            read += 1
            rows += self.engine.remember_rows(state, customer_id, customer, seen)
            if read % 256 == 0:
                time.sleep(self.PAUSE_S)
        seconds = time.monotonic() - started
        self.last = {"version": version, "customers": read, "rows": rows, "seconds": round(seconds, 3)}
        log.info("read %d customers of model %s ahead of their requests (%d scoring rows) in %.2fs",
                 read, version, rows, seconds)
        for callback in self.on_done:
            callback()
        return read
